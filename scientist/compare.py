"""LLM vs mutation vs ES vs hand-designed drifts, compared fairly: the best candidate of each
origin (a proposer, ES, distillation) from the named campaigns and the task's PPO and DPO
baselines are re-trained on fresh seeds at one shared budget (search-time scores are
selected, hence optimistic), through the same sandbox and scorer; costs are the search's,
in the same units for every method.
"""

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from archive import reads
from archive.db import Session
from archive.schema import Campaign, Candidate
from harness.cascade import EvaluationRequest, program_groups
from sandbox.budgets import get_budget
from sandbox.fitness import Estimate, paired_difference, split_estimate
from sandbox.tasks import load_task
from sandbox.vocabulary import ORIGIN_LABELS, Origin, Sandbox, Selection, Status
from scientist.executors.base import Executor, LocalExecutor, batch_choice
from scientist.proposers.registry import PROPOSERS
from scientist.search.seed_blocks import pooled, round_record, seed_block


def compared_origins() -> list[tuple[str, str]]:
    """(origin, label): every proposer's candidates, then the ES network's and distillation's."""
    return [
        (origin, ORIGIN_LABELS.get(origin, origin))
        for origin in (*sorted(PROPOSERS), Origin.ES, Origin.DISTILLED)
    ]


HAND_DESIGNED = (("ppo", "PPO"), ("dpo", "DPO"))


class CompareError(ValueError):
    pass


@dataclass
class Cost:
    """What the search that produced a candidate spent (None for a hand-designed baseline)."""

    training_runs: int = 0
    env_steps: int = 0
    wall_seconds: float = 0.0
    dollars: float = 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


@dataclass
class Score:
    iqm: float | None = None
    ci_low: float | None = None  # None: too few seeds for an interval (sandbox/fitness.py)
    ci_high: float | None = None
    seeds: int = 0

    @property
    def estimate(self) -> Estimate | None:
        return (
            None if self.iqm is None else Estimate(self.iqm, self.ci_low, self.ci_high, self.seeds)
        )


@dataclass
class Row:
    label: str
    candidate_id: int | None = None
    campaigns: list[str] = field(default_factory=list)
    search_fitness: float | None = None
    # missing (no such candidate in the named campaigns) or the re-evaluation's status
    status: str = "missing"
    meta_train: Score = field(default_factory=Score)
    meta_test: Score = field(default_factory=Score)
    cost: Cost | None = None  # None: hand-designed, or missing
    code: str | None = None
    hand_designed: bool = False
    scores: list[list[float]] = field(default_factory=list)  # meta-train, per env and seed
    versus_ppo: Estimate | None = None  # paired with PPO on the comparison's seeds


def split_score(envs: dict) -> Score:
    """Mean over a split's environments of the IQM of normalised scores over seeds, with a
    95% stratified bootstrap interval (seeds resampled within each environment)."""
    estimate = split_estimate(envs)
    if estimate is None:
        return Score()
    return Score(estimate.point, estimate.low, estimate.high, estimate.seeds)


def search_cost(session: Session, campaign: Campaign) -> Cost:
    """Training runs, environment steps, sandbox wall time and dollars of a whole campaign:
    every candidate that trained (its full stage ran) at the campaign's budget, plus the ES
    generations' own training."""
    budget, split = get_budget(campaign.budget), load_task(campaign.task).split(campaign.budget)
    envs = split.meta_train + split.meta_test
    # Searched candidates that trained fully, and rounds on fresh seeds (re-evaluations).
    trained = reads.fully_trained_count(session, campaign.id)
    trained += reads.reevaluation_cost(session, campaign.id)[0]
    es = reads.es_totals(
        session, campaign.id
    )  # ES campaigns' own meta-training, generation by generation
    return Cost(
        training_runs=trained * budget.seeds * len(envs) + es["training_runs"],
        env_steps=trained * budget.seeds * sum(budget.env(e).timesteps for e in envs)
        + es["env_steps"],
        wall_seconds=reads.sandbox_seconds(session, campaign.id) + es["wall_seconds"],
        dollars=reads.spent_usd(session, campaign.id),
    )


def best_of_origin_in(
    session: Session, campaigns: list[Campaign], origin: str
) -> tuple[Candidate, list[Campaign], Cost] | None:
    """The best scored candidate of `origin` across the campaigns, the campaigns that
    proposed that origin, and what their searches cost together (None: no such candidate)."""
    best = reads.best_of_origin(session, [c.id for c in campaigns], origin)
    if best is None:
        return None
    producing = reads.campaigns_producing(session, [c.id for c in campaigns], origin)
    producers = [c for c in campaigns if c.id in producing]
    return best, producers, sum((search_cost(session, c) for c in producers), Cost())


def gather(session: Session, names: list[str]) -> tuple[str, list[Campaign], list[Row]]:
    """The rows to compare: the task's PPO and DPO, then the best scored candidate of each
    origin across the named campaigns (a row stays `missing` when there is none)."""
    campaigns = [reads.get_campaign(session, name) for name in names]
    tasks = {c.task for c in campaigns}
    if len(tasks) != 1:
        raise CompareError(
            f"the campaigns are on different tasks ({', '.join(sorted(tasks))}); "
            "compare one task at a time"
        )
    task = load_task(tasks.pop())
    rows = [
        Row(label, code=task.baseline_source(name), hand_designed=True, status=Status.PENDING)
        for name, label in HAND_DESIGNED
        if name in task.baseline_names
    ]
    control = [c for c in campaigns if (c.config or {}).get("selection") == Selection.NONE]
    evolved = [c for c in campaigns if c not in control]
    # A best-of-N control arm gets rows of its own, beside the evolution it controls for.
    for group, suffix, always in ((evolved, "", True), (control, " (best-of-N control)", False)):
        for origin, label in compared_origins():
            row = Row(label + suffix)
            found = best_of_origin_in(session, group, origin) if group else None
            if found is not None:
                best, producers, row.cost = found
                row.candidate_id, row.search_fitness, row.code = best.id, best.fitness, best.code
                row.campaigns = [c.name for c in producers]
                row.status = Status.PENDING
            if found is not None or always:
                rows.append(row)
    return task.name, campaigns, rows


def reevaluate(
    task: str,
    rows: list[Row],
    budget: str,
    *,
    seed: int,
    sandbox: str = Sandbox.AUTO,
    workers: int = 2,
    batch: int | None = None,
    executor: Executor | None = None,
    on_done=None,
    blocks: int = 1,
) -> list[Row]:
    """Train and score every present row again on `blocks` blocks of the budget's seeds from
    `seed`, each with its evaluation seed (the same for all rows: common random numbers), in
    batches of `batch` (default: the executor's choice), `workers` batches at a time through
    the executor (default: sandboxes here); a batch trains all its blocks in one run. Each
    row's scores pool its blocks. Nothing is recorded: the archive keeps the search's own
    evaluations."""
    present = [r for r in rows if r.code is not None]
    executor = executor or LocalExecutor()
    eval_seed = secrets.randbits(31)
    runs = get_budget(budget).seeds
    first, *further = [seed_block(b, seed, eval_seed, runs) for b in range(blocks)]

    def run(group: list[Row]) -> None:
        request = EvaluationRequest(
            task,
            [r.code for r in group],
            budget,
            sandbox=sandbox,
            seed=first.training_seed,
            eval_seed=first.eval_seed,
            further_blocks=[b.seeds for b in further],
        )
        evaluations = executor(request)
        for row, evaluation in zip(group, evaluations, strict=True):
            per_block = evaluation.per_block()
            failed = next((e for e in per_block if e.status != Status.OK), None)
            row.status = Status.OK if failed is None else failed.status
            if failed is None:
                records = [round_record(b, e) for b, e in zip([first, *further], per_block)]
                per_env = pooled(evaluation.per_env, records)[2]
                row.meta_train = split_score(per_env.get("meta_train", {}))
                row.meta_test = split_score(per_env.get("meta_test", {}))
                row.scores = [
                    e["normalised"]["scores"] for e in per_env.get("meta_train", {}).values()
                ]
            if on_done:
                on_done(row)

    batch = batch or batch_choice(executor, budget, workers).size
    kinds = [
        [present[i] for i in group] for group in program_groups(task, [r.code for r in present])
    ]
    groups = [kind[i : i + batch] for kind in kinds for i in range(0, len(kind), batch)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, groups))
    # Every row trained from the same seed keys and scored on the same episodes: paired.
    ppo = next((r for r in rows if r.label == "PPO" and r.scores), None)
    for row in rows:
        if ppo is not None and row.scores and row is not ppo:
            row.versus_ppo = paired_difference(row.scores, ppo.scores)
    return rows
