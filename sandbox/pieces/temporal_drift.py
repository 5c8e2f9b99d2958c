"""Temporally-aware drifts (TA-LPO, Jackson et al. 2024): `drift(ratio, advantage, progress)`,
elementwise, with progress = n/N the fraction of training's updates done when the loss is
computed (the same for every entry of a call).

For every progress value the drift must be a Mirror Learning drift of (r, A): finite,
non-negative, exactly 0 at r = 1 and flat in r there. The checks are the drift's own
(sandbox/pieces/drift.py: float64 points with a gradient search, float32 at training's call
lengths, the certificate), run at each of PROGRESS, and the runtime monitor watches every
call training makes at the progress it makes it with. The certificate proves a condition at
those progress values only, not between them, so no temporal drift is labelled certified:
every one is monitored while it trains.
"""

import dataclasses

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.pieces import drift
from sandbox.pieces._drift_conditions import SANDBOX_POINTS, TOLERANCES, all_results
from sandbox.pieces.base import Contract, JaxProbe, Piece, Screen
from sandbox.training.components import PlugPoint
from sandbox.vocabulary import Proof

PROGRESS = (0.0, 0.5, 1.0)  # where the drift's checks run in full
# where the float64 points are checked first (cheap): a grid and random progress values
SAMPLED_PROGRESS = tuple(np.linspace(0.0, 1.0, 41)) + tuple(
    np.random.default_rng(0).uniform(size=24)
)
SCREEN_PROGRESS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the pre-screen looks (it is cheap)


def _with_progress(function, progress, ratio, advantage):
    import jax.numpy as jnp

    return function(ratio, advantage, jnp.full_like(ratio, progress))


def at_progress(function, progress: float):
    """The drift of (r, A) that `function` is at one progress value. A jax Partial, so the
    checks' compiled probes are shared by every progress value (and every expression)."""
    import jax.numpy as jnp
    from jax.tree_util import Partial

    inner = function if isinstance(function, Partial) else Partial(function)
    return Partial(_with_progress, inner, jnp.float64(progress))


def check_temporal_drift(
    function, filename: str = "candidate.py", *, sizes=None, proof_function=None
) -> list[CheckResult]:
    """The drift conditions on float64 points at each of SAMPLED_PROGRESS, then in full (every
    layer, the certificate) at each of PROGRESS: the first progress value where one fails
    gives every result (its counterexample names the progress); where all hold, each proof
    says at which progress values it holds, and is `unproved` for the interval between."""
    import jax

    by_progress = []
    with jax.enable_x64(True):
        for progress in SAMPLED_PROGRESS:
            try:
                probe = JaxProbe(at_progress(function, progress))
                results = all_results(probe, SANDBOX_POINTS, TOLERANCES["float64"])
            except Exception:  # crashed on concrete inputs: the full check below says how
                break
            if not all(r.passed for r in results):
                return [_at(r, progress) for r in results]
        for progress in PROGRESS:
            results = drift.check_drift(
                at_progress(function, progress),
                filename,
                sizes=sizes,
                proof_function=proof_function and at_progress(proof_function, progress),
            )
            if not all(r.passed for r in results):
                return [_at(r, progress) for r in results]
            by_progress.append(results)
    return [_between(results) for results in zip(*by_progress, strict=True)]


def _at(result: CheckResult, progress: float) -> CheckResult:
    if result.passed:
        return result
    counterexample = {**(result.counterexample or {}), "progress": progress}
    return dataclasses.replace(
        result, detail=f"at progress {progress:g}: {result.detail}", counterexample=counterexample
    )


def _between(results: tuple[CheckResult, ...]) -> CheckResult:
    """One condition's results at every progress value, as one: its proof `unproved` (saying
    where it was proved), or none where some progress value had none."""
    first = results[0]
    proofs = [r.proof for r in results]
    if any(p is None for p in proofs):
        return dataclasses.replace(first, proof=None)
    proved = [
        p for p, r in zip(PROGRESS, results, strict=True) if r.proof["verdict"] == Proof.PROVED
    ]
    where = ", ".join(f"{p:g}" for p in proved) or "none"
    proof = {
        **first.proof,
        "verdict": Proof.UNPROVED,
        "detail": f"proved at progress {where} of {', '.join(f'{p:g}' for p in PROGRESS)}; "
        "between them checked by the runtime monitor at the progress training reaches",
        "boxes": sum(p["boxes"] for p in proofs),
        "seconds": sum(p["seconds"] for p in proofs),
    }
    return dataclasses.replace(first, proof=proof)


# -- the mutation proposer's pre-screen ---------------------------------------------------------


class _AtProgress:
    """A probe of a temporal drift as a probe of the drift at one progress value."""

    def __init__(self, probe, progress: float):
        self.probe, self.progress = probe, progress

    def _progress(self, ratio):
        return np.full(np.shape(ratio), self.progress)

    def values(self, ratio, advantage):
        return self.probe.values(ratio, advantage, self._progress(ratio))

    def slope(self, ratio, advantage):
        return self.probe.slope(ratio, advantage, self._progress(ratio))


def screen(probe) -> str | None:
    for progress in SCREEN_PROGRESS:
        reason = drift.screen(_AtProgress(probe, progress))
        if reason:
            return f"{reason} at progress {progress:g}"
    return None


def _fingerprint() -> tuple[np.ndarray, ...]:
    """The drift's fingerprint points at every screened progress value."""
    r, a = drift.SCREEN_POINTS.finite
    n = len(SCREEN_PROGRESS)
    return (np.tile(r, n), np.tile(a, n), np.repeat(SCREEN_PROGRESS, r.size))


# -- during training: the runtime monitor -------------------------------------------------------


class TemporalDriftMonitor(drift.DriftMonitor):
    """The drift monitor's probes and verdicts, each probe at its call's progress."""

    def probes(self, inputs, noise):
        import jax.numpy as jnp

        ratio, advantage, progress = inputs
        ratios, advantages = super().probes((ratio, advantage), noise)
        return ratios, advantages, jnp.full_like(ratios, progress[0])

    def inspect(self, inputs, values, probe_inputs, probe_values, slopes):
        return super().inspect(inputs[:2], values, probe_inputs[:2], probe_values, slopes)


# -- the behaviour signature --------------------------------------------------------------------


def behaviour(function) -> np.ndarray:
    """The drift's behaviour inputs at progress 0, 1/2 and 1."""
    import jax.numpy as jnp

    r, a = drift._behaviour_inputs()
    return np.concatenate(
        [np.asarray(function(r, a, jnp.full_like(r, p)), dtype=np.float64) for p in (0.0, 0.5, 1.0)]
    )


def typical(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    ratio, advantage = drift.typical(n, rng)
    return ratio, advantage, np.full(n, rng.uniform())


PIECE = Piece(
    kind="temporal_drift",
    plug_point=PlugPoint.TEMPORAL_DRIFT,
    contract=Contract.ELEMENTWISE,
    arity=3,
    default=None,
    check=check_temporal_drift,
    behaviour=behaviour,
    evidence=(
        "The Mirror Learning conditions are checked as for a drift (points, a gradient search, "
        "float32 at training's call lengths, a certificate) at progress 0, 1/2 and 1, and "
        "watched during training at every progress value training reaches: no symbolic proof "
        "over all progress values."
    ),
    screen=Screen(
        check=screen,
        fingerprint=_fingerprint(),
        anchor=(
            np.ones_like(drift.SCREEN_POINTS.at_one),
            drift.SCREEN_POINTS.at_one,
            np.full_like(drift.SCREEN_POINTS.at_one, 0.5),
        ),
    ),
    monitor=TemporalDriftMonitor(),
    typical=typical,
)
