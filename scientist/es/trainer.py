"""One ES generation as one compiled call: population x seeds PPO agents per meta-train env.

The PPO trainer is the sandbox's own (`make_train`), with the LPO network plugged in as the
drift. Every member of a generation trains on the same seeds (common random numbers), so
the ranking between members reflects their drifts rather than their luck.

Fitness of a member = mean over the task's meta-train environments of the normalised return
(0 = random policy, 1 = PPO at this budget, `sandbox.fitness.normalise`) averaged over seeds.
The return is the mean return of the training episodes that ended in the last 10% of
updates (TrainOutput.episode_return_sum / episode_count): it comes out of the training call
for free, where a separate evaluation rollout would cost a second compiled call per
generation; it is a slightly noisier, slightly lagging estimate of the final policy's return
than the scorer's evaluation episodes, which still judge the final ES mean.

ES is OpenAI-ES (evosax `Open_ES`) with antithetic sampling and centred-rank fitness shaping.
Default settings follow the public "How Should We Meta-Learn RL Algorithms?" LPO code
(population 64, sigma 0.03, 8 seeds) and the DPO paper's appendix (sigma decay 0.999 to a
floor of 0.01), except the optimizer: Adam at 1e-2 instead of 3e-2, which on this
1152-weight network learned a toy target where 3e-2 only wandered (../shared/NOTES.md).
"""

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbox.budgets import EnvBudget, get_budget
from sandbox.fitness import normalise
from sandbox.tasks import TaskSpec
from sandbox.training.components import PlugPoint
from sandbox.training.config import PPOConfig
from sandbox.training.lpo_network import HIDDEN, SHIFT, LPOParams, lpo_drift
from sandbox.training.ppo import Components, make_train
from scientist.es.lpo import init_params


@dataclass(frozen=True)
class ESSettings:
    population: int = 64  # even: antithetic pairs
    sigma: float = 0.03
    learning_rate: float = 0.01
    seeds: int = 8  # PPO seeds per member and environment
    ppo_init: bool = True  # add PPO's drift and start the output layer at 0
    sigma_decay: float = 0.999  # per generation
    sigma_limit: float = 0.01
    lr_decay: float = 0.999  # per generation
    lr_limit: float = 0.001
    optimizer: Literal["adam", "sgd"] = "adam"
    hidden: int = HIDDEN
    tail_fraction: float = 0.1  # share of the last updates whose episodes give the return
    shift: float = SHIFT  # xi of the output's relu(x - xi)
    member_batch: int = 0  # members trained at once (lax.map batches); 0 = the whole population

    def validate(self) -> None:
        if self.population < 2 or self.population % 2:
            raise ValueError(
                f"population must be even and at least 2 (antithetic pairs), got {self.population}"
            )
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")
        if not (self.sigma > 0 and self.learning_rate > 0):
            raise ValueError("sigma and learning_rate must be positive")
        if not 0 < self.tail_fraction <= 1:
            raise ValueError("tail_fraction must be in (0, 1]")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, not {self.optimizer!r}")
        if self.member_batch < 0:
            raise ValueError("member_batch must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ESSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Seconds per generation on a laptop CPU at the smoke budget: for tests and trying things out.
SMOKE_SETTINGS = ESSettings(population=4, seeds=1)


@dataclass(frozen=True)
class GenerationUnits:
    """What one generation costs, in the units the archive accounts."""

    training_runs: int  # population x seeds x meta-train envs
    env_steps: int


@dataclass
class GenerationResult:
    generation: int  # 1-based: the state now holds this many updates
    fitness: (
        np.ndarray
    )  # [population] mean normalised return over envs and seeds (NaN: no episode ended)
    per_env: dict[str, np.ndarray]  # env -> [population] normalised return, mean over seeds
    returns: np.ndarray  # [population, envs, seeds] raw tail returns
    population: LPOParams  # the members' weights, leading axis [population]
    train_seconds: float
    compile_seconds: float  # 0 unless this generation compiled the training call
    tell_seconds: float
    training_runs: int  # population x seeds x envs
    env_steps: int

    @property
    def env_steps_per_second(self) -> float:
        return self.env_steps / self.train_seconds if self.train_seconds > 0 else float("nan")

    @property
    def best(self) -> float:
        return float(np.nanmax(self.fitness)) if np.isfinite(self.fitness).any() else float("nan")

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.fitness)) if np.isfinite(self.fitness).any() else float("nan")

    @property
    def std(self) -> float:
        return float(np.nanstd(self.fitness)) if np.isfinite(self.fitness).any() else float("nan")

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.compile_seconds + self.tell_seconds


def tail_returns(
    episode_return_sum: jnp.ndarray, episode_count: jnp.ndarray, fraction: float
) -> jnp.ndarray:
    """Mean return of the episodes that ended in the last `fraction` of updates (last axis);
    NaN where none ended there."""
    updates = episode_count.shape[-1]
    window = max(1, math.ceil(fraction * updates))
    total = episode_return_sum[..., -window:].sum(-1)
    count = episode_count[..., -window:].sum(-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def _make_strategy(settings: ESSettings, template: LPOParams):
    from evosax.algorithms import Open_ES
    from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn

    learning_rate = optax.exponential_decay(
        settings.learning_rate, 1, settings.lr_decay, end_value=settings.lr_limit
    )
    optimizer = (
        optax.adam(learning_rate) if settings.optimizer == "adam" else optax.sgd(learning_rate)
    )
    std = optax.exponential_decay(
        settings.sigma, 1, settings.sigma_decay, end_value=settings.sigma_limit
    )
    return Open_ES(
        settings.population,
        template,
        use_antithetic_sampling=True,
        optimizer=optimizer,
        std_schedule=std,
        fitness_shaping_fn=centered_rank_fitness_shaping_fn,
    )


class ESGeneration:
    """Everything to run ES generations for one task and budget: the strategy, the compiled
    population trainer and the per-generation cost."""

    def __init__(
        self,
        budget_name: str,
        task: TaskSpec,
        settings: ESSettings,
        configs: dict[str, PPOConfig] | None = None,
    ):
        if task.piece.plug_point is not PlugPoint.DRIFT:
            raise ValueError(
                f"the ES baseline learns a drift; task {task.name} searches for a {task.piece.kind}"
            )
        settings.validate()
        self.settings = settings
        self.budget = get_budget(budget_name)
        self.envs: tuple[str, ...] = task.split(budget_name).meta_train
        self.references: tuple[EnvBudget, ...] = tuple(self.budget.env(e) for e in self.envs)
        configs = configs or {}
        # Meta-training reads no monitor verdict (the ES mean is evaluated as a candidate, in
        # the sandbox, with its monitor on): the probes would only cost 4x the network's calls.
        self.configs: tuple[PPOConfig, ...] = tuple(
            dataclasses.replace(configs.get(e) or self.budget.config(e), monitor=())
            for e in self.envs
        )
        self.template = init_params(
            jax.random.key(0), ppo_init=settings.ppo_init, hidden=settings.hidden
        )
        self.strategy = _make_strategy(settings, self.template)
        self.units = GenerationUnits(
            training_runs=settings.population * settings.seeds * len(self.envs),
            env_steps=settings.population * settings.seeds * sum(c.env_steps for c in self.configs),
        )
        self.trace_count = 0  # how often the population trainer was traced (tests: once)
        self._compiled = None
        self._ask = jax.jit(self.strategy.ask)
        self._tell = jax.jit(self.strategy.tell)

    # -- the compiled call -------------------------------------------------------------------
    def _train_population(self, population: LPOParams, keys: jax.Array) -> jnp.ndarray:
        """Tail returns [population, envs, seeds]: every member on every env and seed."""
        self.trace_count += 1
        s = self.settings

        def member(params: LPOParams) -> jnp.ndarray:
            drift = partial(lpo_drift, params, ppo_init=s.ppo_init, shift=s.shift)
            per_env = []
            for config in self.configs:
                train = make_train(config, Components(drift=drift))
                out = jax.vmap(train, in_axes=(0, None))(keys, config.learning_rate)
                per_env.append(
                    tail_returns(out.episode_return_sum, out.episode_count, s.tail_fraction)
                )
            return jnp.stack(per_env)  # [envs, seeds]

        if s.member_batch and s.member_batch < s.population:
            return jax.lax.map(member, population, batch_size=s.member_batch)
        return jax.vmap(member)(population)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile(self) -> float:
        """Compile the population trainer ahead of time; returns the seconds it took (0 if done)."""
        if self._compiled is not None:
            return 0.0
        start = time.perf_counter()
        population = jax.tree.map(
            lambda x: jnp.zeros((self.settings.population, *x.shape), x.dtype), self.template
        )
        keys = jax.random.split(jax.random.key(0), self.settings.seeds)
        self._compiled = jax.jit(self._train_population).lower(population, keys).compile()
        return time.perf_counter() - start

    def train_population(self, population: LPOParams, keys: jax.Array) -> np.ndarray:
        self.compile()
        return np.asarray(jax.block_until_ready(self._compiled(population, keys)))

    # -- ES state ----------------------------------------------------------------------------
    def init_state(self, seed: int):
        """The ES state before generation 1: its mean is the (PPO-initialised) network."""
        mean = init_params(
            jax.random.key(seed), ppo_init=self.settings.ppo_init, hidden=self.settings.hidden
        )
        return self.strategy.init(jax.random.key(seed), mean, self.strategy.default_params)

    def mean_params(self, state) -> LPOParams:
        mean = self.strategy.get_mean(state)
        return LPOParams(np.asarray(mean.hidden, np.float32), np.asarray(mean.output, np.float32))

    def fitness(self, returns: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per member: the mean over envs of the seed-averaged normalised return."""
        per_env = {}
        for i, (env_id, reference) in enumerate(zip(self.envs, self.references)):
            scores = normalise(
                returns[:, i, :],
                random_return=reference.random_return,
                ppo_return=reference.ppo_return,
            )
            with (
                warnings.catch_warnings()
            ):  # a member with no finished episode is all-NaN: expected
                warnings.simplefilter("ignore", RuntimeWarning)
                per_env[env_id] = np.nanmean(scores, axis=-1)
        return np.mean(np.stack(list(per_env.values())), axis=0), per_env

    def step(self, state, generation: int, seed: int):
        """Run generation `generation` (1-based) from `state`: ask, train, tell. The keys
        derive from (seed, generation) alone, so a resumed run repeats exactly."""
        compile_seconds = self.compile()
        base = jax.random.fold_in(jax.random.key(seed), generation)
        ask_key, train_key, tell_key = jax.random.split(base, 3)
        population, state = self._ask(ask_key, state, self.strategy.default_params)
        keys = jax.random.split(train_key, self.settings.seeds)
        start = time.perf_counter()
        returns = self.train_population(population, keys)
        train_seconds = time.perf_counter() - start
        fitness, per_env = self.fitness(returns)
        start = time.perf_counter()
        # evosax minimises; NaN (no episode ended) ranks last.
        state, _ = self._tell(
            tell_key,
            population,
            jnp.asarray(-fitness, jnp.float32),
            state,
            self.strategy.default_params,
        )
        state = jax.block_until_ready(state)
        tell_seconds = time.perf_counter() - start
        members = LPOParams(np.asarray(population.hidden), np.asarray(population.output))
        return state, GenerationResult(
            generation,
            fitness,
            per_env,
            returns,
            members,
            train_seconds,
            compile_seconds,
            tell_seconds,
            self.units.training_runs,
            self.units.env_steps,
        )


def make_es_generation(
    budget_name: str,
    task_spec: TaskSpec,
    settings: ESSettings,
    configs: dict[str, PPOConfig] | None = None,
) -> ESGeneration:
    """ES for the task's meta-train envs at a budget; `configs` overrides PPO configs per env
    (tests use tiny ones; fitness is still normalised with the budget's references)."""
    return ESGeneration(budget_name, task_spec, settings, configs)
