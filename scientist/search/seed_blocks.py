"""Blocks of seeds and what a candidate's rounds on them add up to.

A campaign trains every candidate on block 0 (the search's seeds) and re-evaluates its
elites on blocks 1, 2, ...: each block is the budget's number of runs from its own training
seed, scored on its own evaluation episodes, the same for every candidate of the campaign
(common random numbers), so rounds in one block are paired seed by seed. A candidate's
fitness pools the seeds of all its scored rounds; its rank score on the islands is that
fitness less one standard error, so a score resting on few seeds ranks lower than the same
score resting on many.
"""

import math
from dataclasses import dataclass

import numpy as np

from archive.schema import EvaluationRound
from sandbox.fitness import Aggregate, interquartile_mean
from sandbox.vocabulary import META_TEST, META_TRAIN, RankBy, Status

SEED_MODULUS = 2**31
BLOCK_STRIDE = 1_000_003  # a prime: blocks of nearby campaign seeds do not collide early
SEARCH_BLOCK = 0  # the block every proposal is scored on; re-evaluations add blocks 1, 2, ...


@dataclass(frozen=True)
class SeedBlock:
    block: int
    training_seed: int
    eval_seed: int | None
    runs: int  # seeds per environment

    @property
    def seeds(self) -> tuple[int, int | None]:
        """(training seed, evaluation seed): what an executor's `further_blocks` lists."""
        return self.training_seed, self.eval_seed


def seed_block(block: int, seed: int, eval_seed: int | None, runs: int) -> SeedBlock:
    """Block `block` of a campaign whose search trains from `seed` and scores on `eval_seed`."""
    shift = BLOCK_STRIDE * block
    return SeedBlock(
        block,
        (seed + shift) % SEED_MODULUS,
        None if eval_seed is None else (eval_seed + shift) % SEED_MODULUS,
        runs,
    )


def round_record(block: SeedBlock, evaluation) -> EvaluationRound:
    """The archive row of one evaluation on one block: per-seed scores and returns of every
    environment, whatever became of it."""
    scores = {
        split: {
            env_id: {
                "normalised": list(result["normalised"]["scores"]),
                "returns": list(result["returns"]),
            }
            for env_id, result in envs.items()
        }
        for split, envs in (evaluation.per_env or {}).items()
    }
    return EvaluationRound(
        campaign_id=0,  # set when written with its candidate
        candidate_id=0,
        block=block.block,
        training_seed=block.training_seed,
        eval_seed=block.eval_seed,
        runs=block.runs,
        status=evaluation.status,
        fitness=evaluation.fitness if evaluation.status == Status.OK else None,
        scores=scores if evaluation.status == Status.OK else {},
        seconds=evaluation.seconds or 0.0,
    )


def pooled(per_env: dict, rounds: list[EvaluationRound]) -> tuple[float, float | None, dict, int]:
    """Fitness, meta-test fitness, per-env results and seeds per env over all the scored
    rounds: each environment's per-seed values concatenated in block order, over the rounds
    that trained it (a screened search round has no meta-test environments; the promoted
    candidate's fresh rounds do). The search's entries (learning curves, seeds) are kept;
    their numbers are replaced by the pooled ones, with the blocks they rest on."""
    scored = [r for r in rounds if r.status == Status.OK]
    result = {
        split: {env: dict(entry) for env, entry in envs.items()} for split, envs in per_env.items()
    }
    for r in scored:
        for split, envs in r.scores.items():
            for env_id in envs:
                result.setdefault(split, {}).setdefault(env_id, {})
    seeds = 0
    for split, envs in result.items():
        for env_id, entry in envs.items():
            having = [r for r in scored if env_id in r.scores.get(split, {})]
            if not having:
                continue
            normalised = [x for r in having for x in r.scores[split][env_id]["normalised"]]
            returns = [x for r in having for x in r.scores[split][env_id]["returns"]]
            agg = Aggregate.of(normalised)
            entry.update(
                returns=returns,
                return_iqm=interquartile_mean(returns),
                normalised={
                    "scores": normalised,
                    "iqm": agg.iqm,
                    "ci_low": agg.ci_low,
                    "ci_high": agg.ci_high,
                },
                blocks=[r.block for r in having],
            )
            seeds = len(normalised) if split == META_TRAIN else seeds

    def mean_iqm(split: str) -> float | None:
        envs = result.get(split) or {}
        return float(np.mean([e["normalised"]["iqm"] for e in envs.values()])) if envs else None

    if not result.get(META_TRAIN):  # no per-seed record: the rounds' own fitness, by weight
        weights = [r.runs for r in scored]
        fitness = float(np.average([r.fitness for r in scored], weights=weights))
        return fitness, None, result, sum(weights)
    return mean_iqm(META_TRAIN), mean_iqm(META_TEST), result, seeds


def seed_variance(rounds: list[EvaluationRound]) -> dict[str, float]:
    """Per meta-train environment, the variance between seeds of one round's normalised scores,
    averaged over the scored rounds given (the campaign's baselines: trusted code, trained
    on every block)."""
    by_env: dict[str, list[float]] = {}
    for r in rounds:
        if r.status != Status.OK or r.runs < 2:
            continue
        for env_id, entry in r.scores.get(META_TRAIN, {}).items():
            by_env.setdefault(env_id, []).append(float(np.var(entry["normalised"], ddof=1)))
    return {env_id: float(np.mean(v)) for env_id, v in by_env.items()}


def rank_score(fitness: float, seeds: int, variance: dict[str, float], rank_by: RankBy) -> float:
    """What islands rank a candidate by: its pooled fitness, less (LCB) one standard error of
    a mean over the environments of `seeds` seeds each."""
    if rank_by is RankBy.MEAN or not variance or seeds < 1:
        return fitness
    envs = len(variance)
    standard_error = math.sqrt(sum(variance.values()) / (envs * envs * seeds))
    return fitness - standard_error
