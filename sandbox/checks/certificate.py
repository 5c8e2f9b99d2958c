"""Branch and bound: settle a condition on every box of a domain from interval bounds, or find
a point that breaks it.

A condition is decided box by box (`Examine`): a box is *settled* when its bounds prove the
condition on all of it, a *violation* is a concrete point where evaluating the candidate
breaks it (bounds alone never convict), and every other box is bisected. The verdict is
`proved` when no box is left, `violated` at the first confirmed counterexample, `unproved`
when the box budget or the time runs out, or when the candidate uses a primitive the
interval rules do not cover (sandbox/checks/intervals.py).

Boxes are examined a chunk at a time, one box per lane of the candidate's traced call, so a
chunk costs one interval pass of its jaxpr and one concrete evaluation.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sandbox.checks.intervals import Interval, NoRule
from sandbox.vocabulary import Proof


@dataclass(frozen=True)
class ConditionProof:
    condition: str
    verdict: Proof
    detail: str
    boxes: int = 0
    seconds: float = 0.0
    counterexample: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Boxes:
    """n boxes over d inputs: lo and hi of shape [n, d]."""

    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return self.lo.shape[0]

    def take(self, index) -> "Boxes":
        return Boxes(self.lo[index], self.hi[index])

    def interval(self, k: int) -> Interval:
        return Interval(self.lo[:, k], self.hi[:, k])

    @staticmethod
    def concat(parts: list["Boxes"]) -> "Boxes":
        return Boxes(np.concatenate([p.lo for p in parts]), np.concatenate([p.hi for p in parts]))


@dataclass(frozen=True)
class Verdict:
    """What `Examine` says of a chunk of boxes."""

    settled: np.ndarray  # [n] bool: proved on the whole box
    split: np.ndarray  # [n] int: the input along which to bisect an unsettled box
    violation: dict[str, Any] | None = None  # counterexample, with "detail"


Examine = Callable[[Boxes], Verdict]


def grid_boxes(*edges: list[float]) -> Boxes:
    """The boxes between consecutive edges of each input, every combination."""
    cells = np.meshgrid(*[np.arange(len(e) - 1) for e in edges], indexing="ij")
    index = np.stack([c.ravel() for c in cells], axis=1)
    lo = np.stack([np.asarray(e)[index[:, k]] for k, e in enumerate(edges)], axis=1)
    hi = np.stack([np.asarray(e)[index[:, k] + 1] for k, e in enumerate(edges)], axis=1)
    return Boxes(lo.astype(np.float64), hi.astype(np.float64))


def bisect(boxes: Boxes, split: np.ndarray, geometric: tuple[bool, ...]) -> Boxes:
    """Each box halved along its `split` input: at the geometric mean for inputs marked
    `geometric` (positive, spanning decades), else at the midpoint."""
    rows = np.arange(len(boxes))
    lo, hi = boxes.lo[rows, split], boxes.hi[rows, split]
    log_scale = np.asarray(geometric)[split] & (lo > 0)
    middle = np.where(log_scale, np.sqrt(np.abs(lo * hi)), 0.5 * (lo + hi))
    left_hi, right_lo = boxes.hi.copy(), boxes.lo.copy()
    left_hi[rows, split] = middle
    right_lo[rows, split] = middle
    return Boxes(np.concatenate([boxes.lo, right_lo]), np.concatenate([left_hi, boxes.hi]))


def branch_and_bound(
    name: str,
    start: Boxes,
    examine: Examine,
    *,
    lanes: int,
    geometric: tuple[bool, ...],
    budget: int,
    seconds: float,
    proved: str,
) -> ConditionProof:
    """Settle every box of `start` (`proved`, the claim in words), find a violation, or run
    out of boxes or time."""
    began = time.monotonic()
    frontier, examined = start, 0
    try:
        while len(frontier):
            if examined >= budget or time.monotonic() - began > seconds:
                spent = "box budget" if examined >= budget else "time"
                return ConditionProof(
                    name,
                    Proof.UNPROVED,
                    f"{spent} spent with {len(frontier)} boxes open",
                    examined,
                    time.monotonic() - began,
                )
            chunk, frontier = frontier.take(slice(0, lanes)), frontier.take(slice(lanes, None))
            verdict = examine(chunk)
            examined += len(chunk)
            if verdict.violation is not None:
                violation = dict(verdict.violation)
                return ConditionProof(
                    name,
                    Proof.VIOLATED,
                    violation.pop("detail"),
                    examined,
                    time.monotonic() - began,
                    violation,
                )
            open_ = ~verdict.settled
            if open_.any():
                halves = bisect(chunk.take(open_), verdict.split[open_], geometric)
                frontier = Boxes.concat([halves, frontier])  # depth first: small boxes soon
    except NoRule as missing:
        return ConditionProof(
            name,
            Proof.UNPROVED,
            f"the candidate uses `{missing.primitive}`, which has no interval rule here or "
            "mixes values across the batch",
            examined,
            time.monotonic() - began,
        )
    return ConditionProof(name, Proof.PROVED, proved, examined, time.monotonic() - began)
