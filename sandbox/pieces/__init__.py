"""Kinds of plug-in piece, one module each in this package (see `base.Piece`).

A module here that defines `PIECE` adds a kind, named like the module (a module whose name
starts with _ is a helper of one, e.g. `_drift_certificate`): a task folder may
then name it (`piece = "..."` in its task.toml), and the checks, the trainer, the behaviour
signature, the mutation proposer and the reports look everything up from it. Nothing else
changes.
"""

import functools
import importlib
import pkgutil

from sandbox.pieces.base import Contract, Piece

__all__ = ["Contract", "Piece", "all_pieces", "get_piece", "piece_at"]


class UnknownPiece(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _modules() -> list[str]:
    """The kinds: every module but `base` and helpers of a kind (named with a leading _)."""
    return [
        m.name
        for m in pkgutil.iter_modules(__path__)
        if m.name != "base" and not m.name.startswith("_")
    ]


@functools.cache
def get_piece(kind: str) -> Piece:
    """The kind declared by module `kind` of this package (imported on first use only: the
    orchestrator reads one declaration without loading every kind's dependencies)."""
    if kind not in _modules():
        raise UnknownPiece(
            f"unknown kind of piece {kind!r}; sandbox/pieces defines {', '.join(_modules())}"
        )
    piece = getattr(importlib.import_module(f"{__name__}.{kind}"), "PIECE", None)
    if not isinstance(piece, Piece) or piece.kind != kind:
        raise UnknownPiece(
            f"sandbox/pieces/{kind}.py must define PIECE = Piece(kind={kind!r}, ...)"
        )
    return piece


def all_pieces() -> dict[str, Piece]:
    return {kind: get_piece(kind) for kind in _modules()}


def piece_at(plug_point: str) -> Piece | None:
    """The kind that fills a plug point of the trainer, if any does."""
    return next((p for p in all_pieces().values() if p.plug_point == plug_point), None)
