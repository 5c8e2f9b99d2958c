"""Distillation: a learned drift -> a short closed form that reproduces it (origin "distilled").

The step from LPO to DPO in the Discovered Policy Optimisation paper, automated. The
learned drift (an archived candidate, usually an ES mean network) is sampled on the
landscape grid in the sandbox; its values and features are described to a language model,
which answers with a closed-form module. That module's landscape (sandbox again) is compared
with the target, and the fit, the grid conditions or the parse error go back to the model in
the same conversation until the fit is within tolerance or the attempts are used up. The
best closed form is archived beside its source (same campaign, parent = the source) and
scored like any candidate: static checks -> validity (the drift conditions, thoroughly) ->
training -> the trusted scorer.

Accounting: every call of the conversation is stored with the one candidate a distillation
adds (the kept closed form, or a no_code candidate when no reply gave a usable module; also
when the run is interrupted), so a campaign's spend (the sum of llm_call.cost_usd) includes
the replies that were not kept, and the candidate's cost_usd is the whole distillation's.

Behaviour duplicates: a distilled candidate is scored even when it behaves like its source
on the signature grid (a perfect distillation is the goal, and its closed form is new); its
signature is recorded only when no earlier candidate has it. Identical code (by hash) is
still a duplicate and is not scored again.

Candidate code, the source's included, runs only in the sandbox; the landscapes that come
back are untrusted numbers, validated by sandbox.landscape.
"""

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from archive import reads, writes
from archive.db import Engine, transaction
from archive.schema import Campaign, Candidate
from harness.landscape import compute_landscape
from sandbox.landscape import Landscape, LandscapeError
from sandbox.pieces import drift
from sandbox.tasks import TaskError, TaskSpec, load_task
from sandbox.vocabulary import EventKind, Origin, Sandbox, Status
from scientist.analysis import DriftFeatures, detect_features
from scientist.executors.base import Executor, LocalExecutor
from scientist.proposers import parsing, prompting
from scientist.proposers.base import CallRecord, ProposerError
from scientist.search.recorder import EventNote, Recorder, SignatureClaim

ORIGIN, OPERATOR = Origin.DISTILLED, "distill"
DEFAULT_TOLERANCE = 0.05  # relative RMSE of D that ends the conversation
SCALE_FLOOR = (
    1e-3  # relative errors divide by max(target RMS, this): a zero target must not divide by 0
)
# The description's sub-grid: nearest landscape points to these ratios, these exact advantages.
TABLE_RATIOS = (0.4, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0, 3.0)
TABLE_ADVANTAGES = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)
WORST_CELLS = 6

# Attempt outcomes, in the order a kept candidate is preferred (best last).
CALL_FAILED, NO_CODE, NO_LANDSCAPE, CONDITIONS, POOR_FIT, ACCEPTED = (
    "call_failed",
    Status.NO_CODE,
    "no_landscape",
    "conditions",
    "poor_fit",
    "accepted",
)


class DistillError(ValueError):
    """The distillation cannot start or make any call (unusable source, bad settings, key
    refused)."""


@dataclass(frozen=True)
class Attempt:
    number: int
    model: str
    outcome: str  # one of the outcomes above
    detail: str  # why, in a line
    cost_usd: float
    code: str | None = None
    fit: dict | None = None
    violations: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "code"}


@dataclass(frozen=True)
class DistillResult:
    candidate_id: int
    source_id: int
    campaign: str
    status: str  # the distilled candidate's: ok, invalid, ... or no_code / duplicate / pending
    fitness: float | None
    meta_test_fitness: float | None
    fit: dict | None  # of the kept closed form
    kept_attempt: int | None
    within_tolerance: bool  # the kept closed form met the tolerance and the grid conditions
    attempts: tuple[Attempt, ...]
    cost_usd: float
    source_features: tuple[str, ...]
    stages: tuple[dict, ...] = ()
    stopped: str | None = None  # why the conversation ended early (a refused key), if it did
    duplicate_of: int | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["attempts"] = [a.to_dict() for a in self.attempts]
        return data


# -- describing and comparing landscapes --------------------------------------------------


def _table_indices(landscape: Landscape) -> tuple[np.ndarray, np.ndarray]:
    """(advantage rows, ratio columns) of the description's sub-grid, nearest points, no repeats."""
    cols = np.unique([int(np.argmin(np.abs(landscape.ratio - r))) for r in TABLE_RATIOS])
    rows = np.unique([int(np.argmin(np.abs(landscape.advantage - a))) for a in TABLE_ADVANTAGES])
    return rows, cols


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "nan"
    return "0" if abs(value) < 1e-6 else f"{value:.4g}"


def _table(landscape: Landscape, values: np.ndarray) -> str:
    rows, cols = _table_indices(landscape)
    lines = [
        "| A \\ r | " + " | ".join(f"{landscape.ratio[c]:.4g}" for c in cols) + " |",
        "|---" * (cols.size + 1) + "|",
    ]
    for i in rows:
        lines.append(
            f"| {landscape.advantage[i]:g} | "
            + " | ".join(_number(values[i, c]) for c in cols)
            + " |"
        )
    return "\n".join(lines)


def describe_landscape(landscape: Landscape, features: DriftFeatures) -> str:
    """The drift for a prompt: D(r, A) and dJ/dr on a coarse sub-grid (4 significant digits)
    and the feature sentences."""
    sentences = "\n".join(f"- {s}" for s in features.describe())
    return (
        "drift D(r, A) (rows: advantage A; columns: ratio r):\n"
        f"{_table(landscape, landscape.drift)}\n\n"
        "dJ/dr = A - dD/dr, the incentive to move r (without a drift it is A everywhere):\n"
        f"{_table(landscape, landscape.d_objective_dr)}\n\n"
        f"What the whole grid ({landscape.advantage.size} x {landscape.ratio.size} points) shows:\n"
        f"{sentences}"
    )


def _errors(target: np.ndarray, candidate: np.ndarray) -> dict:
    both = np.isfinite(target) & np.isfinite(candidate)
    t, c = target[both], candidate[both]
    if not t.size:
        return {"rmse": None, "relative_rmse": None, "r2": None, "max_error": None}
    residual = c - t
    rmse = float(np.sqrt(np.mean(residual**2)))
    total = float(np.sum((t - t.mean()) ** 2))
    return {
        "rmse": rmse,
        "relative_rmse": rmse / max(float(np.sqrt(np.mean(t**2))), SCALE_FLOOR),
        "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else None,
        "max_error": float(np.abs(residual).max()),
    }


def fit_error(target: Landscape, candidate: Landscape) -> dict:
    """How well `candidate` reproduces `target` over the whole grid: RMSE, relative RMSE (to
    the target's RMS), R^2 and the largest error, of D and of dJ/dr. Cells where either
    side is NaN are left out and counted. None where nothing is left to compare."""
    drift, slope = (
        _errors(target.drift, candidate.drift),
        _errors(target.d_objective_dr, candidate.d_objective_dr),
    )
    return {
        "drift_rmse": drift["rmse"],
        "drift_relative_rmse": drift["relative_rmse"],
        "drift_r2": drift["r2"],
        "drift_max_error": drift["max_error"],
        "slope_rmse": slope["rmse"],
        "slope_relative_rmse": slope["relative_rmse"],
        "slope_r2": slope["r2"],
        "cells": int(target.drift.size),
        "target_nan_cells": int((np.isnan(target.drift) | np.isnan(target.d_objective_dr)).sum()),
        "candidate_nan_cells": int(
            (np.isnan(candidate.drift) | np.isnan(candidate.d_objective_dr)).sum()
        ),
    }


def worst_cells(target: Landscape, candidate: Landscape, count: int = WORST_CELLS) -> list[str]:
    """The description's sub-grid cells where D differs most, as lines for the model."""
    rows, cols = _table_indices(target)
    cells = [(i, j) for i in rows for j in cols]
    gap = np.array([abs(candidate.drift[i, j] - target.drift[i, j]) for i, j in cells])
    gap = np.where(np.isnan(gap), np.inf, gap)  # a NaN of the candidate is the worst miss
    lines = []
    for k in np.argsort(-gap, kind="stable")[:count]:
        i, j = cells[k]
        if gap[k] == 0:
            break
        lines.append(
            f"r = {target.ratio[j]:.4g}, A = {target.advantage[i]:g}: D should be "
            f"{_number(target.drift[i, j])}, yours is {_number(candidate.drift[i, j])}; "
            f"dJ/dr should be {_number(target.d_objective_dr[i, j])}, "
            f"yours is {_number(candidate.d_objective_dr[i, j])}"
        )
    return lines


def grid_conditions(landscape: Landscape) -> list[str]:
    """The drift conditions as far as the landscape grid shows them (the drift piece's own
    definitions in float32 tolerances), as sentences; empty when they hold."""
    results = drift.landscape_check(
        landscape.ratio, landscape.advantage, landscape.drift, landscape.d_objective_dr
    )
    return [_sentence(result) for result in results if not result.passed]


def _sentence(result) -> str:
    """A failed condition in the words the conversation uses, from its counterexample."""
    x = {k: _as_float(v) for k, v in (result.counterexample or {}).items()}
    at = f"r = {x.get('r', float('nan')):.4g}, A = {x.get('A', float('nan')):g}"
    if result.name == drift.FINITE.name:
        return f"not finite (e.g. at {at})"
    if result.name == drift.NON_NEGATIVE.name:
        return f"negative: D = {x['value']:.4g} at {at}"
    if result.name == drift.ZERO_AT_ONE.name:
        return f"not zero at r = 1: D = {x['value']:.4g} at A = {x['A']:g}"
    kink = (result.counterexample or {}).get("kink")
    if kink is None:
        return f"slope at r = 1 is {x['autodiff_slope']:.4g}, not 0, at A = {x['A']:g}"
    slope = x["right_slope"] if kink == "right" else x["left_slope"]
    return (
        f"kink at r = 1 ({kink} slope about {slope:.3g} at A = {x['A']:g}, however small the step)"
    )


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # a counterexample's non-finite value is kept as text ("nan")
        return float("nan")


# -- the conversation ---------------------------------------------------------------------


def _messages(task: TaskSpec, source: Candidate, description: str) -> list[dict]:
    user = prompting.render(
        "distill.j2",
        task=task,
        description=description,
        source_id=source.id,
        source_origin=source.origin,
        source_fitness=source.fitness,
    )
    return [
        {"role": "system", "content": prompting.system_message(task)},
        {"role": "user", "content": user},
    ]


def _fit_line(fit: dict) -> str:
    def show(x):
        return "n/a" if x is None else f"{x:.4g}"

    return (
        f"D RMSE {show(fit['drift_rmse'])} (relative {show(fit['drift_relative_rmse'])}, "
        f"R² {show(fit['drift_r2'])}), dJ/dr RMSE {show(fit['slope_rmse'])} "
        f"(relative {show(fit['slope_relative_rmse'])})"
    )


def _judge(
    number: int,
    model: str,
    record: CallRecord,
    truncated: bool,
    task: TaskSpec,
    target: Landscape,
    sandbox: str,
    tolerance: float,
) -> tuple[Attempt, str]:
    """The attempt's outcome and the feedback for the next turn."""
    cost = record.cost_usd
    if record.error is not None:
        return Attempt(number, model, CALL_FAILED, record.error[:300], cost), ""
    parsed = parsing.extract_module(record.response or "", task)
    if not parsed.ok:
        note = parsed.note + (" (the reply was cut off at max_tokens)" if truncated else "")
        return (
            Attempt(number, model, NO_CODE, note, cost),
            f"Your reply gave no usable module: {note}. Answer with the complete module, "
            f"`def {task.entry_point}` included, in one ```python block.",
        )
    try:
        landscape = compute_landscape(task.name, parsed.code, sandbox)
    except LandscapeError as error:
        detail = str(error)[:800]
        return (
            Attempt(number, model, NO_LANDSCAPE, detail, cost, code=parsed.code),
            f"Your module could not be evaluated on the grid: {detail}\n"
            "Fix it and give the complete module in one ```python block.",
        )
    fit, violations = fit_error(target, landscape), tuple(grid_conditions(landscape))
    relative = fit["drift_relative_rmse"]
    good_fit = relative is not None and relative <= tolerance
    outcome = CONDITIONS if violations else (ACCEPTED if good_fit else POOR_FIT)
    attempt = Attempt(
        number,
        model,
        outcome,
        _fit_line(fit),
        cost,
        code=parsed.code,
        fit=fit,
        violations=violations,
    )
    feedback = [
        f"Your drift's fit to the learned one over the whole grid: {_fit_line(fit)}; the goal is a "
        f"relative RMSE of D at most {tolerance:g}."
    ]
    if fit["candidate_nan_cells"]:
        feedback.append(f"It is NaN or infinite at {fit['candidate_nan_cells']} grid points.")
    if violations:
        feedback.append("It breaks the drift conditions: " + "; ".join(violations) + ".")
    feedback += [
        "Largest differences on the table's points:",
        *(f"- {line}" for line in worst_cells(target, landscape)),
    ]
    feedback.append(
        "Adjust the form or the constants so that the values match and every condition holds, "
        "and give the complete module in one ```python block."
    )
    return attempt, "\n".join(feedback)


def _kept(attempts: list[Attempt]) -> Attempt | None:
    """The best attempt with code: a measured fit that meets the conditions beats one that does
    not, which beats code that did not run; the lower relative RMSE, then the later, wins."""
    rank = {NO_LANDSCAPE: 0, CONDITIONS: 1, POOR_FIT: 2, ACCEPTED: 2}

    def key(attempt: Attempt):
        relative = (attempt.fit or {}).get("drift_relative_rmse")
        return (
            rank[attempt.outcome],
            -(relative if relative is not None else np.inf),
            attempt.number,
        )

    with_code = [a for a in attempts if a.code is not None]
    return max(with_code, key=key) if with_code else None


def _note(
    source: Candidate, kept: Attempt | None, attempts: list[Attempt], stopped: str | None
) -> str:
    history = "; ".join(
        f"{a.number} {a.outcome}"
        + (
            f" (relative RMSE {a.fit['drift_relative_rmse']:.3g})"
            if a.fit and a.fit["drift_relative_rmse"] is not None
            else ""
        )
        for a in attempts
    )
    if kept is None:
        head = f"distillation of candidate {source.id} ({source.origin}) gave no usable closed form"
    else:
        head = (
            f"closed form distilled from candidate {source.id} ({source.origin}), "
            f"attempt {kept.number} of {len(attempts)}: "
            + (_fit_line(kept.fit) if kept.fit else f"no fit ({kept.detail[:300]})")
            + (f"; grid conditions broken: {'; '.join(kept.violations)}" if kept.violations else "")
        )
    return f"{head}. Attempts: {history}" + (f". Stopped: {stopped}" if stopped else "")


# -- the whole run ------------------------------------------------------------------------


def _load_source(engine: Engine, source_id: int) -> tuple[Candidate, Campaign]:
    with transaction(engine) as session:
        source = reads.candidate(session, source_id)
        campaign = reads.campaign_by_id(session, source.campaign_id) if source is not None else None
    if source is None:
        raise DistillError(f"no candidate {source_id} in this archive")
    if not source.code:
        raise DistillError(f"candidate {source_id} has no code ({source.status})")
    return source, campaign


def distill(
    engine: Engine,
    source_id: int,
    *,
    models: list[str],
    api_base: str | None = None,
    api_key: str | None = None,
    budget: str | None = None,
    sandbox: str = Sandbox.AUTO,
    seed: int = 0,
    attempts: int = 3,
    tolerance: float = DEFAULT_TOLERANCE,
    timeout: float = 120.0,
    price_per_million: tuple[float, float] | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> DistillResult:
    """Distil candidate `source_id` (a drift) into a closed form, archive it in the source's
    campaign with all the conversation's calls, evaluate it at `budget` (default: the
    campaign's) through `executor` (default: here) and return the outcome. Models take turns,
    one per attempt. Raises DistillError when it cannot start; SandboxUnavailable from the
    sandbox backend."""
    from scientist.proposers.llm import LLMProposer

    if attempts < 1 or not tolerance > 0:
        raise DistillError("attempts must be >= 1 and tolerance > 0")
    phase = on_phase or (lambda _: None)
    source, campaign = _load_source(engine, source_id)
    try:
        task = load_task(source.task)
        budget = budget or campaign.budget
        task.split(budget)
    except TaskError as error:
        raise DistillError(str(error)) from None
    if not task.piece.has_landscape:
        raise DistillError(
            f"candidate {source_id} is a {task.name} candidate ({task.piece.kind}); only drifts "
            "are distilled"
        )
    try:
        llm = LLMProposer(
            models,
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
            price_per_million=price_per_million,
        )
    except ProposerError as error:
        raise DistillError(str(error)) from None

    phase(f"sampling candidate {source_id}'s drift in the sandbox")
    try:
        target = compute_landscape(task.name, source.code, sandbox)
    except LandscapeError as error:
        raise DistillError(f"no landscape for candidate {source_id}: {error}") from None
    features = detect_features(target)
    messages = _messages(task, source, describe_landscape(target, features))

    records: list[CallRecord] = []
    tried: list[Attempt] = []
    stopped = None
    rng = random.Random(seed)  # only the retry jitter
    try:
        for number in range(1, attempts + 1):
            model = llm.models[(number - 1) % len(llm.models)]
            phase(f"attempt {number}/{attempts}: asking {model}")
            try:
                record, truncated = llm.complete(messages, model=model, rng=rng)
            except ProposerError as error:  # the key was refused: no later call would work
                stopped = str(error)
                break
            records.append(record)
            phase(f"attempt {number}/{attempts}: checking the reply in the sandbox")
            attempt, feedback = _judge(
                number, model, record, truncated, task, target, sandbox, tolerance
            )
            tried.append(attempt)
            if on_attempt:
                on_attempt(attempt)
            if attempt.outcome == ACCEPTED:
                break
            if record.response is not None:  # a failed call leaves the conversation as it was
                messages += [
                    {"role": "assistant", "content": record.response},
                    {"role": "user", "content": feedback},
                ]
    except (
        BaseException
    ) as error:  # interrupted or a sandbox failure: the dollars spent still go on record
        if records:
            _add(
                engine,
                campaign.id,
                source,
                None,
                tried,
                records,
                f"{type(error).__name__}: {error}"[:300],
            )
        raise
    if not records:
        raise DistillError(f"no model call could be made: {stopped}")

    kept = _kept(tried)
    candidate = _add(engine, campaign.id, source, kept, tried, records, stopped)
    candidate, result = _evaluate(
        engine, campaign.id, candidate, source, task.name, budget, sandbox, seed, executor, phase
    )
    return DistillResult(
        candidate_id=candidate.id,
        source_id=source.id,
        campaign=campaign.name,
        fit=kept.fit if kept else None,
        kept_attempt=kept.number if kept else None,
        within_tolerance=kept is not None and kept.outcome == ACCEPTED,
        attempts=tuple(tried),
        cost_usd=sum(r.cost_usd for r in records),
        source_features=tuple(features.describe()),
        stopped=stopped,
        **result,
    )


def _evaluate(
    engine: Engine,
    campaign_id: int,
    candidate: Candidate,
    source: Candidate,
    task: str,
    budget: str,
    sandbox: str,
    seed: int,
    executor: Executor | None,
    phase: Callable[[str], None],
) -> tuple[Candidate, dict]:
    """The distilled candidate scored through the campaign's recorder (unless it is a
    duplicate or failed its checks), and what the result reports of it."""
    result = dict(
        status=candidate.status,
        fitness=None,
        meta_test_fitness=None,
        stages=(),
        duplicate_of=candidate.duplicate_of,
    )
    if candidate.status == Status.PENDING:
        phase(f"evaluating candidate {candidate.id} ({budget} budget)")
        record = Recorder(
            engine,
            campaign_id,
            executor or LocalExecutor(),
            task=task,
            budget=budget,
            sandbox=sandbox,
            seed=seed,
        )
        recorded = record(
            candidate.id,
            candidate.code,
            claim=SignatureClaim.AFTER_RECORDING,
            event=EventNote(
                EventKind.DISTILL_EVALUATED,
                f"candidate {candidate.id} (distilled from {source.id})",
                {"source_id": source.id},
            ),
        )
        candidate, evaluation = recorded.candidate, recorded.evaluation
        result.update(
            status=candidate.status,
            fitness=candidate.fitness,
            meta_test_fitness=candidate.meta_test_fitness,
            stages=tuple(s.__dict__ if not isinstance(s, dict) else s for s in evaluation.stages),
        )
    return candidate, result


def _add(
    engine: Engine,
    campaign_id: int,
    source: Candidate,
    kept: Attempt | None,
    tried: list[Attempt],
    records: list[CallRecord],
    stopped: str | None,
) -> Candidate:
    """The distillation's one candidate and all its calls, in one transaction, with an event."""
    with transaction(engine) as session:
        campaign = reads.campaign_by_id(session, campaign_id)
        candidate = writes.add_candidate(
            session,
            campaign,
            code=kept.code if kept else None,
            origin=ORIGIN,
            operator=OPERATOR,
            island=source.island,
            generation=source.generation,
            parent_id=source.id,
            model=kept.model if kept else records[-1].model,
            note=_note(source, kept, tried, stopped),
            calls=records,
        )
        fit = kept.fit if kept else None
        writes.log_event(
            session,
            campaign_id,
            EventKind.DISTILLED,
            f"candidate {candidate.id} from {source.id}: {candidate.status}"
            + (f", {_fit_line(fit)}" if fit else ""),
            {
                "candidate_id": candidate.id,
                "source_id": source.id,
                "fit": _finite(fit),
                "attempts": [a.to_dict() | {"fit": _finite(a.fit)} for a in tried],
                "kept_attempt": kept.number if kept else None,
                "cost_usd": sum(r.cost_usd for r in records),
                "stopped": stopped,
            },
        )
    return candidate


def _finite(value):
    """JSON columns take no NaN or infinity."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
