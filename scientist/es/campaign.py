"""An ES campaign against the archive: generations resume from the newest checkpoint.

Each generation is written in one transaction (its `es_checkpoint` row and an event), so a
crash loses at most the generation in flight, and a rerun with the same name continues
from generation k + 1 with the same random keys. The ES mean network is then rendered as an
ordinary mirror_drift candidate (origin "es", operator "es-mean") and evaluated by the same
sandbox cascade and scorer as every other candidate. Costs are accounted in training runs,
environment steps and wall seconds (an ES campaign spends no dollars).

The campaign row stores `proposer = "es"` and a config with the keys `scientist status`
reads (generations, population, islands = 1, workers = 1); `scientist resume` is for
proposer campaigns, so an ES campaign is continued by running `scientist es` again.
"""

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from archive import lease, reads, writes
from archive.db import Engine, transaction
from archive.schema import Campaign, Candidate, ESCheckpoint
from sandbox.tasks import load_task
from sandbox.training.config import PPOConfig
from sandbox.training.lpo_network import render_lpo_candidate
from sandbox.vocabulary import EventKind, Origin, Sandbox, Status
from scientist.campaign.config import check_unchanged
from scientist.campaign.lifecycle import leased_run
from scientist.es.checkpoint import params_to_bytes, state_from_bytes, state_to_bytes
from scientist.es.lpo import slope_at_one
from scientist.es.trainer import ESGeneration, ESSettings, GenerationResult, make_es_generation
from scientist.executors.base import Executor, LocalExecutor
from scientist.search.recorder import EventNote, Recorder

SUPPORTED_TASKS = ("mirror_drift",)
OPERATOR = "es-mean"
# Settings that may change when a campaign is resumed; the rest define it.
RESUMABLE = ("generations", "sandbox", "render_every")


class ESCampaignError(RuntimeError):
    pass


@dataclass
class ESProgress:
    """What the command line shows; passed to `on_progress` at every phase change."""

    name: str
    generations: int
    generation: int = 0  # generations completed
    phase: str = "start"  # start / compile+train / train / checkpoint / evaluate / done
    last: GenerationResult | None = None
    best_mean_fitness: float | None = None  # best generation-mean fitness so far this run
    training_runs: int = 0  # this run
    env_steps: int = 0
    wall_seconds: float = 0.0
    candidate_id: int | None = None
    candidate_status: str | None = None
    candidate_fitness: float | None = None
    candidate_meta_test: float | None = None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


@functools.lru_cache(maxsize=4)
def _generation_for(budget: str, task: str, settings: ESSettings, configs: tuple) -> ESGeneration:
    """One ES generation (and one compiled population trainer) per setting within a process."""
    return make_es_generation(budget, load_task(task), settings, dict(configs) or None)


def open_es_campaign(
    engine: Engine,
    name: str,
    task: str,
    budget: str,
    settings: ESSettings,
    seed: int,
    generations: int,
    sandbox: str,
    render_every: int,
) -> Campaign:
    """The ES campaign of that name: created if new, else checked against these settings
    (only generations, sandbox and render_every may differ) and updated."""
    if task not in SUPPORTED_TASKS:
        raise ESCampaignError(
            "the ES baseline learns a Mirror Learning drift: "
            f"only task {', '.join(SUPPORTED_TASKS)} is supported, not {task!r}"
        )
    load_task(task).split(budget)  # an unknown budget fails before anything is written
    settings.validate()
    config = {
        "name": name,
        "task": task,
        "budget": budget,
        "proposer": Origin.ES,
        Origin.ES: settings.to_dict(),
        "seed": seed,
        "generations": generations,
        "sandbox": sandbox,
        "render_every": render_every,
        # read by `scientist status`: one "island" of `population` members per generation
        "population": settings.population,
        "islands": 1,
        "workers": 1,
        "max_cost": None,
        "models": [],
    }
    with transaction(engine) as session:
        campaign = reads.find_campaign(session, name)
        if campaign is None:
            return writes.create_campaign(
                session,
                name=name,
                task=task,
                budget=budget,
                proposer=Origin.ES,
                config=config,
                note=f"es campaign on {task} at the {budget} budget",
                data={"config": config},
            )
        stored = campaign.config
        if campaign.proposer != Origin.ES:
            raise ESCampaignError(
                f"campaign {name} is a {campaign.proposer} campaign, not an ES one; "
                "choose another --name"
            )
        try:
            check_unchanged(name, stored, config, RESUMABLE)
        except ValueError as error:
            raise ESCampaignError(str(error)) from None
        writes.set_config(session, campaign, {**stored, **{k: config[k] for k in RESUMABLE}})
        return campaign


class ESCampaign:
    def __init__(
        self,
        engine: Engine,
        settings: ESSettings,
        name: str,
        task: str,
        budget: str,
        generations: int,
        seed: int,
        *,
        sandbox: str = Sandbox.AUTO,
        render_every: int = 0,
        on_progress: Callable[[ESProgress], None] | None = None,
        executor: Executor | None = None,
        configs: dict[str, PPOConfig] | None = None,
        screening: bool = False,
    ):
        """`screening`: the rendered means train their meta-train environments alone (a
        benchmark that only needs their validity and search score; their rows say so)."""
        if generations < 1:
            raise ESCampaignError("an ES campaign needs at least one generation")
        self.engine, self.settings, self.task, self.budget = engine, settings, task, budget
        self.generations, self.seed, self.sandbox, self.render_every = (
            generations,
            seed,
            sandbox,
            render_every,
        )
        self.on_progress = on_progress or (lambda progress: None)
        self.campaign = open_es_campaign(
            engine, name, task, budget, settings, seed, generations, sandbox, render_every
        )
        self.stop = threading.Event()
        self.record = Recorder(
            engine,
            self.campaign.id,
            executor or LocalExecutor(),
            task=task,
            budget=budget,
            sandbox=sandbox,
            seed=seed,
            cancelled=self.stop.is_set,
            screening=screening,
        )
        self.es_generation = _generation_for(
            budget, task, settings, tuple(sorted((configs or {}).items()))
        )
        self.progress = ESProgress(name, generations)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> Candidate | None:
        """Run the remaining generations and evaluate the final mean; returns its candidate."""
        with transaction(self.engine) as session:
            done = reads.es_totals(session, self.campaign.id)["generations"]
        try:
            with leased_run(
                self.engine,
                self.campaign.id,
                self.stop,
                resume_hint="stopped by the user; run `scientist es` with the same --name to "
                "continue",
                detail=f"; generations {done + 1}..{self.generations}",
                before_release=self._log_budget,
            ) as outcome:
                final = self._generations(done)
        except lease.CampaignBusy as error:
            raise ESCampaignError(str(error)) from None
        self.campaign = outcome.campaign
        self._report("done")
        return final

    def _generations(self, done: int) -> Candidate | None:
        """The generations after `done`, then the final mean's candidate."""
        self._evaluate_pending()
        state, done = self._restore()
        if done > self.generations:
            raise ESCampaignError(
                f"campaign {self.campaign.name} has {done} generations already; "
                f"ask for at least that many"
            )
        self.progress.generation = done
        for generation in range(done + 1, self.generations + 1):
            self._report("train" if self.es_generation.compiled else "compile+train")
            start = time.perf_counter()
            state, result = self.es_generation.step(state, generation, self.seed)
            self._save(state, result, time.perf_counter() - start)
            if (
                self.render_every
                and generation % self.render_every == 0
                and generation < self.generations
            ):
                self._candidate(state, generation)
        final = self._candidate(state, self.generations)
        return final

    def _restore(self):
        with transaction(self.engine) as session:
            checkpoint = reads.latest_es_checkpoint(session, self.campaign.id)
        initial = self.es_generation.init_state(self.seed)
        if checkpoint is None:
            return initial, 0
        return state_from_bytes(checkpoint.state, initial), checkpoint.generation

    def _save(self, state, result: GenerationResult, wall_seconds: float) -> None:
        units, s = self.es_generation.units, self.settings
        sigma = float(state.std)
        row = ESCheckpoint(
            campaign_id=self.campaign.id,
            generation=result.generation,
            state=state_to_bytes(state),
            mean=params_to_bytes(self.es_generation.mean_params(state)),
            best_fitness=_finite(result.best),
            mean_fitness=_finite(result.mean),
            std_fitness=_finite(result.std),
            member_fitness=[_finite(float(f)) for f in result.fitness],
            per_env={env: _finite(float(v.mean())) for env, v in result.per_env.items()},
            sigma=sigma,
            env_steps=units.env_steps,
            training_runs=units.training_runs,
            wall_seconds=wall_seconds,
        )
        message = (
            f"generation {result.generation}: fitness best {result.best:.3f} "
            f"mean {result.mean:.3f} std {result.std:.3f}; {units.training_runs} training runs, "
            f"{units.env_steps:,} env steps, {wall_seconds:.1f} s"
        )
        data = {
            "generation": result.generation,
            "best": row.best_fitness,
            "mean": row.mean_fitness,
            "std": row.std_fitness,
            "sigma": sigma,
            "training_runs": units.training_runs,
            "env_steps": units.env_steps,
            "wall_seconds": wall_seconds,
            "compile_seconds": result.compile_seconds,
            "train_seconds": result.train_seconds,
            "env_steps_per_second": _finite(result.env_steps_per_second),
            "population": s.population,
            "seeds": s.seeds,
        }
        with transaction(self.engine) as session:
            writes.add_checkpoint(session, row)
            writes.log_event(
                session,
                self.campaign.id,
                EventKind.ES_GENERATION,
                message,
                data,
                key=f"es_generation:{result.generation}",
            )
        p = self.progress
        p.generation, p.last = result.generation, result
        p.training_runs += units.training_runs
        p.env_steps += units.env_steps
        p.wall_seconds += wall_seconds
        if _finite(result.mean) is not None and (
            p.best_mean_fitness is None or result.mean > p.best_mean_fitness
        ):
            p.best_mean_fitness = result.mean
        self._report("checkpoint")

    # -- the ES mean as a candidate ----------------------------------------------------------
    def _candidate(self, state, generation: int) -> Candidate:
        """Render the mean network after `generation`, add it (once) and evaluate it."""
        with transaction(self.engine) as session:
            existing = reads.first_candidate(
                session,
                self.campaign.id,
                origin=Origin.ES,
                operator=OPERATOR,
                generation=generation,
            )
            checkpoint = reads.es_checkpoint(session, self.campaign.id, generation)
        if existing is not None and existing.status != Status.PENDING:
            return existing
        if existing is None:
            best, mean = (
                (checkpoint.best_fitness, checkpoint.mean_fitness) if checkpoint else (None, None)
            )
            params = self.es_generation.mean_params(state)
            # The drift check calls a first-order slope of about 2 at r = 1 a kink (see
            # sandbox/training/lpo_network.py).
            slope = float(np.abs(slope_at_one(params, np.linspace(-10.0, 10.0, 41))).max())
            note = (
                f"ES mean network after generation {generation} of campaign {self.campaign.name}; "
                f"that generation's members scored best {_fmt(best)}, mean {_fmt(mean)} "
                f"(normalised, 1 = PPO); network slope at r = 1 up to {slope:.2f} for |A| <= 10"
            )
            code = render_lpo_candidate(
                params,
                ppo_init=self.settings.ppo_init,
                shift=self.settings.shift,
                note=f"generation {generation} of {self.campaign.name}",
            )
            with transaction(self.engine) as session:
                campaign = reads.campaign_by_id(session, self.campaign.id)
                existing = writes.add_candidate(
                    session,
                    campaign,
                    code=code,
                    origin=Origin.ES,
                    operator=OPERATOR,
                    island=0,
                    generation=generation,
                    note=note,
                )
                writes.log_event(
                    session,
                    campaign.id,
                    EventKind.ES_CANDIDATE,
                    f"candidate {existing.id}: ES mean after generation {generation} "
                    f"({existing.status})",
                    {"candidate_id": existing.id, "generation": generation, "slope_at_one": slope},
                )
        if existing.status == Status.PENDING:
            existing = self._evaluate(existing)
        return existing

    def _evaluate_pending(self) -> None:
        """An evaluation cut short by a crash is redone first."""
        with transaction(self.engine) as session:
            pending = [
                c
                for c in reads.pending_candidates(session, self.campaign.id)
                if c.origin == Origin.ES
            ]
        for candidate in pending:
            self._evaluate(candidate)

    def _evaluate(self, candidate: Candidate) -> Candidate:
        p = self.progress
        p.candidate_id, p.candidate_status, p.candidate_fitness, p.candidate_meta_test = (
            candidate.id,
            None,
            None,
            None,
        )
        self._report("evaluate")

        recorded = self.record(
            candidate.id,
            candidate.code,
            event=EventNote(EventKind.ES_EVALUATED, f"candidate {candidate.id}"),
        )
        if recorded is None:  # cancelled: still pending
            return candidate
        candidate = recorded.candidate
        p.candidate_status, p.candidate_fitness = candidate.status, candidate.fitness
        p.candidate_meta_test = candidate.meta_test_fitness
        self._report("evaluated")
        return candidate

    # -- bookkeeping -------------------------------------------------------------------------
    def _report(self, phase: str) -> None:
        self.progress.phase = phase
        self.on_progress(self.progress)

    def _log_budget(self, session) -> None:
        totals = reads.es_totals(session, self.campaign.id)
        writes.log_event(
            session,
            self.campaign.id,
            EventKind.ES_BUDGET,
            f"{totals['generations']} generations: {totals['training_runs']} training runs, "
            f"{totals['env_steps']:,} env steps, {totals['wall_seconds']:.1f} s, $0",
            totals,
        )


def run_es_campaign(
    engine: Engine,
    settings: ESSettings,
    name: str,
    task: str = "mirror_drift",
    budget: str = "smoke",
    generations: int = 10,
    seed: int = 0,
    on_progress: Callable[[ESProgress], None] | None = None,
    *,
    sandbox: str = Sandbox.AUTO,
    render_every: int = 0,
    executor: Executor | None = None,
    configs: dict[str, PPOConfig] | None = None,
) -> Candidate | None:
    """Create or continue the ES campaign `name` up to `generations`, then render the ES mean
    as a candidate and evaluate it through the executor (also every `render_every`
    generations when > 0). `configs` (PPO configs per env for the ES itself) is a test hook."""
    return ESCampaign(
        engine,
        settings,
        name,
        task,
        budget,
        generations,
        seed,
        sandbox=sandbox,
        render_every=render_every,
        on_progress=on_progress,
        executor=executor,
        configs=configs,
    ).run()
