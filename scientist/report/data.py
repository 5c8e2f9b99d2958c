"""Everything a report says, read from the archive in one pass: pure data, no rendering.

Scores are the search's own evaluations (the seeds the campaign trained on); confidence
intervals are 95% stratified bootstraps with a fixed seed, so the same archive always gives
the same report. Nothing here runs a candidate.
"""

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from archive import reads
from archive.db import Session
from archive.schema import Campaign, Candidate
from sandbox import formulas
from sandbox.budgets import get_budget
from sandbox.checks.report import assurance_of
from sandbox.fitness import MIN_SEEDS_PER_ENV, MIN_VALUES
from sandbox.tasks import load_task
from sandbox.vocabulary import (
    EVALUATED,
    FAILURES,
    CampaignStatus,
    Origin,
    Review,
    Selection,
    Status,
)
from scientist.compare import (
    Cost,
    Score,
    best_of_origin_in,
    compared_origins,
    search_cost,
    split_score,
)
from scientist.report.reproduction import Reproduction, recorded
from scientist.search.paired import Paired, versus_baselines
from scientist.search.paired import labels as paired_labels

LEADERBOARD_SIZE = 10
DISCOVERED_SIZE = 3
LINEAGE_DEPTH = 12


@dataclass(frozen=True)
class Method:
    task: str
    summary: str
    description: str
    piece: str  # the kind of piece searched for
    prototype: str
    has_landscape: bool
    evidence: str  # how the validity conditions were established
    meta_train: tuple[str, ...]
    meta_test: tuple[str, ...]
    budget: str
    budget_description: str
    seeds: int
    eval_episodes: int
    timesteps: dict[str, int]  # env -> training steps per seed
    proposer: str
    models: tuple[str, ...]
    generations: int | None
    islands: int | None
    population: int | None
    backends: tuple[str, ...]  # sandboxes the evaluations ran in
    reevaluate_top: int = 0  # elites re-evaluated on fresh seeds: an island's top k


@dataclass(frozen=True)
class Entry:
    """One scored candidate as the report shows it."""

    id: int
    label: str  # "PPO", "#12 (llm, rewrite)"
    origin: str
    operator: str
    model: str | None
    generation: int
    parent_id: int | None
    fitness: float
    meta_train: Score
    meta_test: Score
    code: str
    code_hash: str | None
    checks: tuple[dict, ...]
    lineage: tuple[str, ...] = ()  # ancestors, nearest first, as labels
    assurance: str | None = None  # certified, or passed sampling (sandbox/checks/report.py)
    formula: str | None = None  # LaTeX of the simplest equivalent formula (sandbox/formulas.py)
    seeds: int = 0  # per environment, all evaluation rounds pooled
    held: bool = False  # waiting for its re-evaluation: not a discovery yet
    versus: tuple[
        tuple[str, str], ...
    ] = ()  # (baseline, paired difference) (scientist/search/paired.py)
    labels: tuple[str, ...] = ()  # "beats PPO", "beats DPO": earned after re-evaluation

    @property
    def is_baseline(self) -> bool:
        return self.origin == Origin.BASELINE


@dataclass(frozen=True)
class GenerationPoint:
    generation: int
    evaluated: int
    scored: int
    best: float | None
    median: float | None
    best_so_far: float | None


@dataclass(frozen=True)
class Curve:
    label: str
    steps: tuple[float, ...]
    returns: tuple[float | None, ...]


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    candidate_id: int | None
    campaigns: tuple[str, ...]
    search_fitness: float | None
    meta_test: Score
    cost: Cost | None  # None for the hand-designed baselines


@dataclass(frozen=True)
class ESRun:
    campaign: str
    generations: tuple[tuple[int, float | None, float | None], ...]  # (generation, best, mean)

    @property
    def best(self) -> float | None:
        return max((b for _, b, _ in self.generations if b is not None), default=None)


@dataclass(frozen=True)
class ArmRow:
    """One campaign of the comparison as a search: evolution or its best-of-N control, at
    what cost, and what it found."""

    campaign: str
    selection: str  # a Selection
    proposals: int
    sandbox_seconds: float
    reevaluation_seconds: float
    best: Entry | None
    beats_ppo: int  # candidates labelled "beats PPO"


@dataclass
class ReportData:
    campaign: str
    status: str
    created: datetime
    last_evaluated: datetime | None
    method: Method
    counts: dict[str, int]
    dollars: float
    cost: Cost
    generations: list[GenerationPoint]
    baselines: list[Entry]
    leaderboard: list[Entry]
    discovered: list[Entry]
    curves: dict[str, dict[str, list[Curve]]]  # split -> env -> curves
    comparison: list[ComparisonRow]
    compared_campaigns: tuple[str, ...]
    es_runs: list[ESRun]
    arms: list[ArmRow] = field(default_factory=list)
    reproduction: Reproduction | None = None
    limitations: list[str] = field(default_factory=list)

    @property
    def best(self) -> Entry | None:
        return self.discovered[0] if self.discovered else None

    @property
    def evaluated(self) -> int:
        return sum(n for status, n in self.counts.items() if status in EVALUATED)


class ReportError(ValueError):
    pass


def collect(session: Session, name: str, against: list[str] | None = None) -> ReportData:
    """The report's data for campaign `name`. `against` names the campaigns it is compared
    with (default: every other campaign on the same task in this archive)."""
    campaign = reads.find_campaign(session, name)
    if campaign is None:
        raise ReportError(f"no campaign named {name!r} in this archive")
    task = load_task(campaign.task)
    ranked = [(r.id, r.origin) for r in reads.ranking(session, campaign.id)]
    # Full rows (curves, code) only for what is shown: an archive may hold 100,000 candidates.
    shown = [i for i, _ in ranked[:LEADERBOARD_SIZE]]
    shown += [i for i, origin in ranked if origin == Origin.BASELINE and i not in shown]
    shown += [i for i, origin in ranked if origin != Origin.BASELINE and i not in shown][
        :DISCOVERED_SIZE
    ]
    rows = reads.candidates_by_id(session, shown)
    labels = _labels(session, campaign.id)
    paired = versus_baselines(session, list(rows.values()))
    entries = {i: _entry(rows[i], labels, paired.get(i, [])) for i in shown}
    baselines = [entries[i] for i, origin in ranked if origin == Origin.BASELINE]
    discovered = [
        _with_formula(_with_lineage(session, entries[i], labels), task)
        for i in [i for i, origin in ranked if origin != Origin.BASELINE][:DISCOVERED_SIZE]
    ]
    others = _comparison_campaigns(session, campaign, against)
    data = ReportData(
        campaign=campaign.name,
        status=campaign.status,
        created=campaign.created_at,
        last_evaluated=reads.last_evaluated_at(session, campaign.id),
        method=_method(session, campaign, task),
        counts=reads.status_counts(session, campaign.id),
        dollars=reads.spent_usd(session, campaign.id),
        cost=search_cost(session, campaign),
        generations=_generations(session, campaign.id),
        baselines=baselines,
        leaderboard=[entries[i] for i, _ in ranked[:LEADERBOARD_SIZE]],
        discovered=discovered,
        curves=_curves(rows, [*discovered, *baselines], campaign),
        comparison=_comparison(session, campaign, others, baselines),
        compared_campaigns=tuple(c.name for c in others),
        es_runs=_es_runs(session, [campaign, *others]),
        arms=[
            _arm(session, c, labels if c.id == campaign.id else None) for c in [campaign, *others]
        ],
        reproduction=recorded(campaign.budget),
    )
    data.limitations = limitations(data)
    return data


def _labels(session: Session, campaign_id: int) -> dict[int, str]:
    return {
        i: (baseline or "").upper()
        if origin == Origin.BASELINE
        else f"#{i} ({origin}, {operator or '?'})"
        for i, origin, operator, baseline in reads.provenance(session, campaign_id)
    }


def _entry(c: Candidate, labels: dict[int, str], paired: list[Paired]) -> Entry:
    return Entry(
        id=c.id,
        label=labels.get(c.id, f"#{c.id}"),
        origin=c.origin,
        operator=c.operator,
        model=c.model,
        generation=c.generation,
        parent_id=c.parent_id,
        fitness=float(c.fitness),
        meta_train=split_score(c.per_env.get("meta_train", {})),
        meta_test=split_score(c.per_env.get("meta_test", {})),
        code=c.code or "",
        code_hash=c.code_hash,
        checks=tuple((c.checks or {}).get("checks", ())),
        assurance=assurance_of(c.checks),
        seeds=c.seeds,
        held=c.review == Review.HELD,
        versus=tuple((p.baseline, p.describe(3)) for p in paired),
        labels=tuple(paired_labels(paired)),
    )


def _with_lineage(session: Session, entry: Entry, labels: dict[int, str]) -> Entry:
    """The entry with the labels of its nearest LINEAGE_DEPTH ancestors."""
    ancestors = reads.lineage(session, entry.id, LINEAGE_DEPTH + 1)[1:]
    return Entry(**{**entry.__dict__, "lineage": tuple(labels.get(i, f"#{i}") for i in ancestors)})


def _with_formula(entry: Entry, task) -> Entry:
    """The entry with the LaTeX of its code's simplest formula, when its code is a single
    expression of the grammar (parsed, never run)."""
    formula = formulas.of_source(entry.code, task.entry_point, tuple(task.inputs))
    latex = formula.latex() if formula is not None else None
    return Entry(**{**entry.__dict__, "formula": latex})


def _method(session: Session, campaign: Campaign, task) -> Method:
    budget, split = get_budget(campaign.budget), task.split(campaign.budget)
    backends = reads.backends(session, campaign.id)
    config = campaign.config or {}
    return Method(
        task=task.name,
        summary=task.summary,
        description=task.description.strip(),
        piece=task.piece.kind,
        prototype=task.prototype,
        has_landscape=task.piece.has_landscape,
        evidence=task.piece.evidence,
        meta_train=tuple(split.meta_train),
        meta_test=tuple(split.meta_test),
        budget=budget.name,
        budget_description=budget.description,
        seeds=budget.seeds,
        eval_episodes=budget.eval_episodes,
        timesteps={e: budget.env(e).timesteps for e in (*split.meta_train, *split.meta_test)},
        proposer=campaign.proposer,
        models=tuple(config.get("models") or ()),
        generations=config.get("generations"),
        islands=config.get("islands"),
        population=config.get("population"),
        backends=tuple(sorted(backends)),
        reevaluate_top=config.get("reevaluate_top", 0),
    )


def _generations(session: Session, campaign_id: int) -> list[GenerationPoint]:
    """Every generation's counts, best and median fitness, with the best so far."""
    points, best_so_far = [], None
    for g in reads.progression(session, campaign_id).generations:
        if g.best is not None:
            best_so_far = g.best if best_so_far is None else max(best_so_far, g.best)
        points.append(
            GenerationPoint(g.generation, g.evaluated, g.scored, g.best, g.median, best_so_far)
        )
    return points


def _curves(
    rows: dict[int, Candidate], shown: list[Entry], campaign: Campaign
) -> dict[str, dict[str, list[Curve]]]:
    """Learning curves (mean return over seeds during training) of the discovered candidates
    and the baselines, per split and environment."""
    budget = get_budget(campaign.budget)
    curves: dict[str, dict[str, list[Curve]]] = {}
    for entry in shown:
        for split, envs in rows[entry.id].per_env.items():
            for env, result in envs.items():
                values = result.get("learning_curve") or []
                if not values:
                    continue
                total = budget.env(env).timesteps
                steps = tuple(
                    float(x) for x in np.linspace(total / len(values), total, len(values))
                )
                curves.setdefault(split, {}).setdefault(env, []).append(
                    Curve(entry.label, steps, tuple(values))
                )
    return curves


def _comparison_campaigns(
    session: Session, campaign: Campaign, against: list[str] | None
) -> list[Campaign]:
    if against is None:
        return [c for c in reads.campaigns(session, campaign.task) if c.id != campaign.id]
    found = []
    for name in dict.fromkeys(against):
        other = reads.find_campaign(session, name)
        if other is None:
            raise ReportError(f"no campaign named {name!r} to compare with")
        if other.task != campaign.task:
            raise ReportError(
                f"campaign {name} is on task {other.task}, not {campaign.task}; "
                "compare one task at a time"
            )
        if other.id != campaign.id:
            found.append(other)
    return found


def _comparison(
    session: Session, campaign: Campaign, others: list[Campaign], baselines: list[Entry]
) -> list[ComparisonRow]:
    """PPO and DPO (this campaign's evaluations of them), then the best candidate of each
    origin (LLM, mutation, ES, distilled) across the campaigns, with what its search cost."""
    rows = [
        ComparisonRow(b.label, b.id, (campaign.name,), b.fitness, b.meta_test, None)
        for b in baselines
    ]
    for origin, label in compared_origins():
        found = best_of_origin_in(session, [campaign, *others], origin)
        if found is not None:
            best, producers, cost = found
            rows.append(
                ComparisonRow(
                    label,
                    best.id,
                    tuple(c.name for c in producers),
                    best.fitness,
                    split_score(best.per_env.get("meta_test", {})),
                    cost,
                )
            )
    return rows


def _arm(session: Session, campaign: Campaign, labels: dict[int, str] | None) -> ArmRow:
    """A campaign as a search: its proposals, sandbox time and best proposed candidate (by
    pooled fitness), with how many of its candidates beat PPO (only re-evaluated ones can)."""
    best_id = next(
        (r.id for r in reads.ranking(session, campaign.id) if r.origin != Origin.BASELINE), None
    )
    reviewed = reads.candidates_in_review(session, campaign.id, Review.DONE)
    rows = {c.id: c for c in reviewed}
    if best_id is not None and best_id not in rows:
        rows.update(reads.candidates_by_id(session, [best_id]))
    paired = versus_baselines(session, list(rows.values()))
    labels = labels or _labels(session, campaign.id)
    return ArmRow(
        campaign=campaign.name,
        selection=(campaign.config or {}).get("selection", Selection.EVOLUTION),
        proposals=reads.proposal_count(session, campaign.id),
        sandbox_seconds=reads.sandbox_seconds(session, campaign.id),
        reevaluation_seconds=reads.reevaluation_cost(session, campaign.id)[1],
        best=None if best_id is None else _entry(rows[best_id], labels, paired.get(best_id, [])),
        beats_ppo=sum(
            any(p.beats and p.baseline == "ppo" for p in paired.get(c.id, [])) for c in reviewed
        ),
    )


def _es_runs(session: Session, campaigns: list[Campaign]) -> list[ESRun]:
    runs = []
    for campaign in campaigns:
        points = reads.es_generations(session, campaign.id)
        if points:
            runs.append(ESRun(campaign.name, tuple(points)))
    return runs


def limitations(data: ReportData) -> list[str]:
    """What the numbers do not show, worked out from the data itself."""
    m, notes = data.method, []
    notes.append(
        f"Scores come from the search's own training runs ({m.seeds} seeds per environment, "
        f"{m.eval_episodes} evaluation episodes). The best of {data.evaluated} evaluated "
        "candidates was chosen on the meta-training score, which is therefore optimistic; the "
        "held-out environments played no part in selection. `scientist compare` re-trains the "
        "best candidates on fresh seeds."
    )
    bare = [e for e in data.leaderboard if not e.meta_train.estimate.has_interval]
    if bare:
        notes.append(
            f"{len(bare)} of the {len(data.leaderboard)} leaderboard entries rest on too few seeds "
            f"for an interval (at least {MIN_SEEDS_PER_ENV} per environment and {MIN_VALUES} in "
            "all, where the bootstrap's coverage was checked); their differences are not evidence. "
            "A candidate is labelled as beating PPO or DPO only when, after re-evaluation, its "
            "paired interval over the fresh seeds alone lies above zero."
        )
    notes.append(m.evidence)
    failed = {s: n for s, n in data.counts.items() if s in FAILURES}
    if failed:
        notes.append(
            f"{sum(failed.values())} of {data.evaluated} evaluated candidates failed a stage ("
            + ", ".join(f"{n} {s}" for s, n in failed.items())
            + "); they are in the archive, not here."
        )
    if data.counts.get(Status.PENDING):
        notes.append(
            f"{data.counts[Status.PENDING]} candidates were never evaluated "
            f"(campaign status: {data.status})."
        )
    if data.status != CampaignStatus.FINISHED:
        notes.append(
            f"The campaign's status is '{data.status}': this report shows the archive as it stood."
        )
    if not data.es_runs:
        notes.append(
            "No evolution-strategies campaign on this task is in the archive, so there is no ES "
            "baseline to compare with (`scientist es`)."
        )
    if m.proposer == Origin.LLM and data.dollars == 0:
        notes.append(
            "No dollars were recorded: the models were free or unpriced (set price_per_million)."
        )
    return notes
