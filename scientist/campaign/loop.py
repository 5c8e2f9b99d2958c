"""The campaign loop: proposals and evaluations overlap, the archive is the only state.

The main thread walks the slots (generation, island, k) in order and asks the proposer for
candidates, gathered into batches of up to `batch` while earlier batches train; evaluator
threads (`workers`: batches in flight) hand each batch to the executor (the sandbox cascade
here, or a Ray task on a cluster) and write what comes back. A batch goes out when it is
full and an evaluator is free, or when nothing else is running and its first member has
waited EAGER_SECONDS (a slow proposer never leaves the machine idle; a fast one still fills
the batch, which costs little more to evaluate than one candidate). Each
proposal is written (with its model calls) before it is evaluated, and each evaluation in
one transaction with its candidate, so a crash at any moment, kill -9 included, loses at
most work in flight: on resume, pending candidates are evaluated, filled slots are skipped,
and nothing is evaluated twice.
"""

import random
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from archive import reads, writes
from archive.db import Engine, transaction
from archive.schema import Campaign, Candidate
from sandbox.fitness import seed_count
from sandbox.tasks import load_task
from sandbox.vocabulary import DECIDED_WITHOUT_EVALUATION, CampaignStatus, EventKind, Origin, Status
from scientist.campaign.config import CampaignConfig
from scientist.campaign.lifecycle import leased_run
from scientist.executors.base import Executor, LocalExecutor, batch_choice
from scientist.proposers.base import Proposal, ProposalRequest, Proposer
from scientist.search.paired import REFERENCES
from scientist.search.recorder import Recorder
from scientist.search.seed_blocks import SEARCH_BLOCK
from scientist.search.strategy import Slot, make_strategy
from scientist.search.views import views

EAGER_SECONDS = 5.0


class CampaignError(RuntimeError):
    pass


@dataclass
class Progress:
    """What the terminal display shows; refreshed after every proposal and evaluation."""

    name: str
    planned: int
    proposed: int = 0
    evaluated: int = 0
    in_flight: int = 0  # candidates in batches being evaluated
    batches: int = 0  # batches being evaluated
    gathering: int = 0  # candidates waiting for the next batch
    generation: int = 0
    best_id: int | None = None
    best_fitness: float | None = None
    reevaluated: int = 0  # elites trained again on fresh seeds
    spent_usd: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    last: str = ""


class CampaignLoop:
    def __init__(
        self,
        engine: Engine,
        config: CampaignConfig,
        proposer: Proposer,
        *,
        executor: Executor | None = None,
        on_progress=None,
    ):
        self.engine, self.proposer = engine, proposer
        self.on_progress = on_progress or (lambda progress: None)
        self.campaign, self.config = open_campaign(engine, config)
        self.task = load_task(self.config.task)
        self.strategy = make_strategy(
            self.config.selection, engine, self.campaign.id, self.config.search
        )
        self.stop = (
            threading.Event()
        )  # set on Ctrl-C: evaluations in flight are abandoned, left pending
        c = self.config
        executor = executor or LocalExecutor()
        choice = batch_choice(executor, c.budget, c.workers)
        self.batch_size, self.batch_reason = c.batch or choice.size, choice.reason
        if c.batch:
            self.batch_reason = f"batch {c.batch}: as configured"
        self.record = Recorder(
            engine,
            self.campaign.id,
            executor,
            task=c.task,
            budget=c.budget,
            sandbox=c.sandbox,
            seed=c.seed,
            eval_seed=c.eval_seed,
            cancelled=self.stop.is_set,
            rank_by=c.rank_by,
            tell=self.strategy.tell,
            screening=c.screens,
        )
        self.review: Future | None = None  # the re-evaluation job in flight (one at a time)
        self.progress = Progress(self.config.name, planned=self._planned())

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> Campaign:
        self.in_flight: dict[Future, list[int]] = {}
        self.gathering: list[tuple[int, str]] = []
        self.gathering_since = time.monotonic()
        with leased_run(
            self.engine,
            self.campaign.id,
            self.stop,
            resume_hint="stopped by the user; `scientist resume` continues it",
            config=self.config.model_dump(mode="json"),
        ) as outcome:
            # One more thread than batches in flight: a re-evaluation never waits for a batch.
            executor = self._pool = ThreadPoolExecutor(
                max_workers=self.config.workers + 1, thread_name_prefix="evaluator"
            )
            try:
                self._event(EventKind.BATCH, self.batch_reason, size=self.batch_size)
                self.progress.last = self.batch_reason
                self._seed_baselines()
                for candidate in self._pending():  # baselines, or what a stopped run left
                    self._wait_for_capacity(executor)
                    self._submit(executor, candidate.id, candidate.code, eager=False)
                self._flush(executor)
                self._review(executor)  # elites a stopped run left held
                outcome.status, outcome.message = self._propose_all(executor)
                self._flush(executor)
                while self.in_flight:
                    self._collect(wait(self.in_flight, return_when=FIRST_COMPLETED).done)
            finally:
                self.stop.set()  # evaluations in flight are abandoned, left pending
                executor.shutdown(wait=True, cancel_futures=True)
        self.campaign = outcome.campaign
        return self.campaign

    def _propose_all(self, executor) -> tuple[str, str]:
        with transaction(self.engine) as session:
            filled = reads.slot_counts(session, self.campaign.id)
        c = self.config
        started = time.monotonic()
        for generation in range(1, c.generations + 1):
            self.progress.generation = generation
            self.strategy.before_generation(generation)
            for island in range(c.islands):
                useful, total = filled.get((generation, island), (0, 0))
                while useful < c.population and total < c.population * c.attempts_per_slot:
                    if c.max_cost is not None and self._spent() >= c.max_cost:
                        self._event(
                            CampaignStatus.COST_CAP,
                            f"spent ${self._spent():.4f} of ${c.max_cost:.4f}; no more proposals",
                        )
                        return CampaignStatus.COST_CAP, f"dollar cap ${c.max_cost} reached"
                    if c.max_seconds is not None and time.monotonic() - started >= c.max_seconds:
                        message = f"time cap of {c.max_seconds:.0f} s reached; no more proposals"
                        self._event(CampaignStatus.TIME_CAP, message)
                        return CampaignStatus.TIME_CAP, message
                    self._wait_for_capacity(executor)
                    self._wait_for_parents(executor, island)
                    status = self._propose_one(executor, generation, island, attempt=total)
                    total += 1
                    useful += status not in DECIDED_WITHOUT_EVALUATION
        return CampaignStatus.FINISHED, ""

    def _propose_one(self, executor, generation: int, island: int, attempt: int) -> str:
        c = self.config
        rng = random.Random(f"{c.seed}:{generation}:{island}:{attempt}")
        ask = self.strategy.ask(Slot(generation, island, attempt), rng)
        request = ProposalRequest(
            task=self.task,
            island=island,
            generation=generation,
            parents=views(self.engine, ask.parent_ids),
            inspirations=views(self.engine, ask.inspiration_ids),
            failures=views(self.engine, ask.failure_ids),
            rng=rng,
        )
        proposal: Proposal = self.proposer.propose(request)
        with transaction(self.engine) as session:
            candidate = writes.add_candidate(
                session,
                self.campaign,
                code=proposal.code,
                origin=self.proposer.name,
                operator=proposal.operator,
                island=island,
                generation=generation,
                parent_id=proposal.parent_ids[0] if proposal.parent_ids else None,
                inspiration_ids=proposal.parent_ids[1:],
                model=proposal.model,
                note=proposal.note,
                calls=proposal.calls,
            )
        self.progress.proposed += 1
        self.progress.spent_usd += proposal.cost_usd
        self.progress.last = (
            f"#{candidate.id} g{generation} i{island} {proposal.operator}: {candidate.status}"
        )
        if candidate.status == Status.PENDING:
            self._submit(executor, candidate.id, candidate.code)
        self._refresh()
        return candidate.status

    # -- evaluation ------------------------------------------------------------------------
    def _submit(self, executor, candidate_id: int, code: str, *, eager: bool = True) -> None:
        """Into the batch being gathered; it goes out when full and an evaluator is free, or
        (`eager`) when nothing is being evaluated and the batch has waited EAGER_SECONDS: an
        idle machine never waits long for a slow proposer to fill a batch."""
        if not self.gathering:
            self.gathering_since = time.monotonic()
        self.gathering.append((candidate_id, code))
        full = len(self.gathering) >= self.batch_size
        waited = time.monotonic() - self.gathering_since >= EAGER_SECONDS
        if (full and len(self.in_flight) < self.config.workers) or (
            eager and waited and not self.in_flight
        ):
            self._flush(executor)
        self._count()

    def _flush(self, executor) -> None:
        if self.gathering:
            batch, self.gathering = self.gathering, []
            self.in_flight[executor.submit(self._evaluate, batch)] = [i for i, _ in batch]
        self._count()

    def _count(self) -> None:
        self.progress.in_flight = sum(len(ids) for ids in self.in_flight.values())
        self.progress.batches, self.progress.gathering = len(self.in_flight), len(self.gathering)

    def _evaluate(self, batch: list[tuple[int, str]]) -> list[tuple[Candidate, float | None]]:
        """Each recorded candidate and its parent's fitness; those abandoned at shutdown are
        left out (still pending, evaluated on resume). A sandbox failure raises: it stops the
        campaign."""
        recorded = [r for r in self.record.batch(batch) if r is not None]
        with transaction(self.engine) as session:
            return [
                (r.candidate, reads.fitness_of(session, r.candidate.parent_id)) for r in recorded
            ]

    def _collect(self, done) -> None:
        for future in done:
            self.in_flight.pop(future)
            if future is self.review:
                self.review = None
            # A sandbox or archive failure stops the campaign; the batch stays pending.
            for candidate, parent_fitness in future.result():
                self.progress.evaluated += 1
                self.progress.last = f"#{candidate.id} {candidate.status}" + (
                    f" fitness {candidate.fitness:.3f}" if candidate.fitness is not None else ""
                )
                if candidate.model:
                    # Feedback for a cost-aware model ensemble: did the child beat its parent?
                    improved = candidate.fitness is not None and (
                        parent_fitness is None or candidate.fitness > parent_fitness
                    )
                    self.proposer.record_outcome(candidate.model, improved)
        self._review(self._pool)
        self._count()
        self._refresh()

    # -- elite re-evaluation ---------------------------------------------------------------
    def _review(self, executor) -> None:
        """Send the held candidates out as one re-evaluation job, unless one is in flight
        (one at a time: two would both train a baseline's missing block); those held
        meanwhile go when it is collected."""
        if self.review is not None:
            return
        batch = self.strategy.promotions()
        if batch:
            self.review = executor.submit(self._reevaluate, batch)
            self.in_flight[self.review] = [i for i, _ in batch]

    def _reevaluate(self, held: list[tuple[int, str]]) -> list:
        """The further blocks of seeds the held candidates lack, and the baselines lack (the
        paired references), trained in one batch run per set of missing blocks: usually all
        held candidates lack all of them, and the baselines none or all. Nothing to collect
        afterwards; a stopped campaign leaves the rest held, for its resume."""
        ids = [i for i, _ in held]
        with transaction(self.engine) as session:
            baselines = [
                (c.id, c.code)
                for name, c in reads.scored_baselines(session, self.campaign.id).items()
                if name in REFERENCES
            ]
            rounds = reads.rounds_of(session, [i for i, _ in held + baselines])
        fresh = range(SEARCH_BLOCK + 1, SEARCH_BLOCK + 1 + self.config.review_blocks)
        lacking: dict[tuple[int, ...], list[tuple[int, str]]] = {}
        for i, code in held + baselines:
            have = {r.block for r in rounds[i]}
            missing = tuple(b for b in fresh if b not in have)
            if missing:
                lacking.setdefault(missing, []).append((i, code))
        for missing, members in lacking.items():
            blocks = [self.record.block(b) for b in missing]
            if self.record.rounds(members, blocks) is None:
                return []  # cancelled
        self.record.finish_review(ids)
        with transaction(self.engine) as session:
            rows = reads.candidates_by_id(session, ids)
        summary = ", ".join(
            f"#{i} {rows[i].status}"
            + (
                f" {rows[i].fitness:.3f} ({rows[i].seeds} seeds)"
                if rows[i].fitness is not None
                else ""
            )
            for i in ids
        )
        fresh = self.config.review_blocks * self.record.search_block.runs
        self._event(
            EventKind.REEVALUATION,
            f"re-evaluated on {seed_count(fresh)} more: {summary}",
            candidate_ids=ids,
        )
        self.progress.reevaluated += len(ids)
        return []

    def _wait_for_one(self, executor) -> None:
        if not self.in_flight:
            self._flush(executor)
        self._collect(wait(self.in_flight, return_when=FIRST_COMPLETED).done)

    def _wait_for_capacity(self, executor) -> None:
        """Room for one more proposal: the batch being gathered is not full, or it can go."""
        while len(self.gathering) >= self.batch_size:
            if len(self.in_flight) < self.config.workers:
                self._flush(executor)
            else:
                self._wait_for_one(executor)

    def _wait_for_parents(self, executor, island: int) -> None:
        """Proposals need at least one scored member on their island (a baseline at worst)."""
        while not self.strategy.can_ask(island):
            if not self.in_flight and not self.gathering:
                raise CampaignError(
                    f"island {island} has no scored candidate to select parents from: every "
                    "baseline failed its evaluation (see `scientist archive list`)"
                )
            self._wait_for_one(executor)

    # -- archive bookkeeping ---------------------------------------------------------------
    def _seed_baselines(self) -> None:
        """Generation 0: the task's baselines, added once; those that seed the search are
        members of every island, the others (references only) of none."""
        seeds = set(self.config.seed_baselines or self.task.baseline_names)
        with transaction(self.engine) as session:
            if reads.has_event(session, self.campaign.id, EventKind.BASELINES):
                return
            for name in self.task.baseline_names:
                writes.add_candidate(
                    session,
                    self.campaign,
                    code=self.task.baseline_source(name),
                    origin=Origin.BASELINE,
                    operator="seed",
                    island=0,
                    generation=0,
                    baseline_name=name,
                    member_of=tuple(range(self.config.islands)) if name in seeds else (),
                    note=f"baseline {name}",
                )
            writes.log_event(
                session,
                self.campaign.id,
                EventKind.BASELINES,
                ", ".join(self.task.baseline_names),
                key=EventKind.BASELINES,
            )

    def _pending(self):
        with transaction(self.engine) as session:
            return reads.pending_candidates(session, self.campaign.id)

    def _spent(self) -> float:
        with transaction(self.engine) as session:
            return reads.spent_usd(session, self.campaign.id)

    def _planned(self) -> int:
        return (
            len(self.task.baseline_names)
            + self.config.generations * self.config.islands * self.config.population
        )

    def _refresh(self) -> None:
        with transaction(self.engine) as session:
            self.progress.counts = reads.status_counts(session, self.campaign.id)
            best = reads.leaderboard(session, self.campaign.id, top=1)
        if best:
            self.progress.best_id, self.progress.best_fitness = best[0].id, best[0].fitness
        self.on_progress(self.progress)

    def _event(self, kind: str, message: str, **data) -> None:
        with transaction(self.engine) as session:
            writes.log_event(session, self.campaign.id, kind, message, data)


def open_campaign(engine: Engine, config: CampaignConfig) -> tuple[Campaign, CampaignConfig]:
    """The campaign of that name, created from `config` if new; resumed with the stored
    settings (and the resumable changes in `config`) if it exists."""
    task = load_task(config.task)  # an unknown task fails here, before anything is written
    unknown = set(config.seed_baselines) - set(task.baseline_names)
    if unknown:
        raise CampaignError(
            f"no baseline {', '.join(sorted(unknown))} in task {task.name}; it has "
            f"{', '.join(task.baseline_names)}"
        )
    with transaction(engine) as session:
        campaign = reads.find_campaign(session, config.name)
        if campaign is not None:
            if campaign.task != config.task:
                raise CampaignError(
                    f"campaign {config.name} exists for task {campaign.task}, not {config.task}"
                )
            config = config.resumed_with(campaign.config)
            return campaign, config
        if config.eval_seed is None:  # drawn once, so the campaign's rounds stay paired
            config = config.model_copy(update={"eval_seed": secrets.randbits(31)})
        campaign = writes.create_campaign(
            session,
            name=config.name,
            task=config.task,
            budget=config.budget,
            proposer=config.proposer,
            config=config.model_dump(mode="json"),
            note=f"{config.proposer} campaign on {config.task}",
        )
        return campaign, config
