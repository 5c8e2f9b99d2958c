"""Behaviour signatures: what a candidate computes on a fixed set of inputs, rounded and
hashed, so that two sources that behave the same are caught before they are trained twice.
Each kind of piece declares its inputs (`Piece.behaviour`).

Computed inside the sandbox (it runs candidate code); the trusted side only compares the
hashes, so a forged signature can at worst cost its own candidate an evaluation.
"""

import hashlib

from sandbox.pieces import Piece

SIGNIFICANT_DIGITS = 4


def behaviour_signature(piece: Piece, function) -> str:
    """A hex digest of the outputs rounded to 4 significant digits (non-finite values kept
    as such). -0.0 and 0.0 are the same behaviour."""
    values = piece.behaviour(function).ravel()
    text = ",".join("0" if v == 0 else f"{v:.{SIGNIFICANT_DIGITS}g}" for v in values.tolist())
    return hashlib.sha256(f"{piece.plug_point}:{values.size}:{text}".encode()).hexdigest()[:32]
