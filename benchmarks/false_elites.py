"""False elites: how many "beats PPO" labels survive fresh seeds, with elite re-evaluation on
and off, and whether evolution beats its best-of-N control at equal proposals.

    python -m benchmarks.false_elites                      # 3 smoke campaigns of 40 GP proposals
    python -m benchmarks.false_elites --proposals 80 --fresh-blocks 8 --arms lcb mean

Campaigns with the mutation proposer, the same seed and the same number of proposals, one per
arm: evolution with re-evaluation ranked by the lower bound (`lcb`, the default), the same
ranked by the pooled mean (`mean`), evolution without re-evaluation (`no-reevaluation`,
`--reevaluate-top 0`) and the best-of-N control arm with re-evaluation (`control`,
`--selection none`); the first, third and fourth run by default. A label is what a user
reads off each campaign: with re-evaluation, the paired label "beats PPO"
(scientist/search/paired.py); without it, the only evidence there is, a search-time fitness above
PPO's. Every labelled candidate, and each campaign's best, is then trained again with PPO on
`--fresh-blocks` blocks of seeds none of the campaigns used (the same sandbox and scorer,
nothing written to the archives): a label survives when the fresh paired difference from PPO
is above zero. The zero drift (no constraint at all) is trained beside them: where it scores
like PPO, the budget leaves a drift nothing to improve and every label is a false one.
Measured, never asserted.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from archive import reads
from archive.db import open_engine, transaction
from harness.cascade import evaluate_batch
from sandbox.budgets import get_budget
from sandbox.fitness import Estimate, iqm_estimate, paired_difference
from sandbox.tasks import load_task
from sandbox.vocabulary import META_TRAIN, Origin, RankBy, Review, Selection, Status
from scientist.campaign.config import CampaignConfig
from scientist.campaign.loop import CampaignLoop
from scientist.proposers.mutation import MutationProposer
from scientist.search.paired import versus_baselines
from scientist.search.seed_blocks import seed_block

TASK = "mirror_drift"
FRESH_SEED = 900_001  # far from the campaigns' blocks (seed + 1,000,003 per block)
ARMS = {
    "lcb": ("evolution-reevaluated-lcb", {"rank_by": RankBy.LCB}),
    "mean": ("evolution-reevaluated-mean", {"rank_by": RankBy.MEAN}),
    "no-reevaluation": ("evolution-no-reevaluation", {"reevaluate_top": 0}),
    "control": ("best-of-N-control", {"selection": Selection.NONE}),
}
SHORT = {name: arm.replace("-", "_") for arm, (name, _) in ARMS.items()}  # keys in the JSON line


@dataclass
class Arm:
    name: str
    settings: dict
    labelled: list[tuple[int, str]]  # (id, code) of the candidates labelled "beats PPO"
    best: tuple[int, str] | None
    proposals: int
    reevaluated: int  # candidates that reached the top k and were trained on fresh blocks
    sandbox_seconds: float
    reevaluation_seconds: float


def run_campaign(db: Path, name: str, settings: dict, proposals: int, seed: int) -> Arm:
    engine = open_engine(f"sqlite:///{db}")
    islands, population = 2, 4
    config = CampaignConfig(
        name=name,
        task=TASK,
        generations=max(1, proposals // (islands * population)),
        islands=islands,
        population=population,
        budget="smoke",
        sandbox="process",
        seed=seed,
        **settings,
    )
    campaign = CampaignLoop(engine, config, MutationProposer(load_task(TASK))).run()
    with transaction(engine) as session:
        rows = [c for c in reads.leaderboard(session, campaign.id, top=None)]
        proposed = [c for c in rows if c.origin != Origin.BASELINE]
        ppo = reads.scored_baselines(session, campaign.id)["ppo"]
        if config.reevaluate_top:
            paired = versus_baselines(session, proposed)
            labelled = [
                c for c in proposed if any(p.beats for p in paired[c.id] if p.baseline == "ppo")
            ]
        else:  # what a user had before: a search-time fitness above PPO's
            labelled = [c for c in proposed if c.fitness > ppo.fitness]
        counts = reads.status_counts(session, campaign.id)
        spent = reads.sandbox_seconds(session, campaign.id)
        reevaluation = reads.reevaluation_cost(session, campaign.id)[1]
        reevaluated = len(reads.candidates_in_review(session, campaign.id, Review.DONE))
    best = proposed[0] if proposed else None
    return Arm(
        name,
        settings,
        [(c.id, c.code) for c in labelled],
        (best.id, best.code) if best else None,
        sum(counts.values()) - len(load_task(TASK).baseline_names),
        reevaluated,
        spent,
        reevaluation,
    )


def fresh_scores(sources: list[str], blocks: int, seed: int) -> list[list[float] | None]:
    """Each source's meta-train normalised scores (one environment at the smoke budget) over
    `blocks` fresh blocks of seeds, trained beside each other in one run; None where it
    failed."""
    runs = get_budget("smoke").seeds
    first, *further = [seed_block(index, seed, seed + 7, runs) for index in range(blocks)]
    evaluations = evaluate_batch(
        TASK,
        sources,
        "smoke",
        sandbox="process",
        seed=first.training_seed,
        eval_seed=first.eval_seed,
        further_blocks=[b.seeds for b in further],
    )
    scores: list[list[float] | None] = []
    for evaluation in evaluations:
        per_block = evaluation.per_block()
        if any(e.status != Status.OK for e in per_block):
            scores.append(None)
            continue
        scores.append(
            [
                x
                for e in per_block
                for x in next(iter(e.per_env[META_TRAIN].values()))["normalised"]["scores"]
            ]
        )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--proposals", type=int, default=40)
    parser.add_argument("--fresh-blocks", type=int, default=4, help="fresh blocks of 2 seeds")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=["lcb", "no-reevaluation", "control"]
    )
    args = parser.parse_args()
    task = load_task(TASK)
    ppo_code = task.baseline_source("ppo")
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        arms = [
            run_campaign(Path(scratch) / "archive.db", *ARMS[arm], args.proposals, args.seed)
            for arm in args.arms
        ]
    print(f"campaigns: {time.monotonic() - start:.0f} s", flush=True)
    # One fresh re-training of PPO and every candidate to check, paired on the same seeds.
    checked: dict[tuple[str, int], str] = {}  # ids are per archive: keyed by campaign too
    for arm in arms:
        checked.update(((arm.name, i), code) for i, code in arm.labelled)
        if arm.best:
            checked[arm.name, arm.best[0]] = arm.best[1]
    ids = list(checked)
    references = [ppo_code, task.baseline_source("zero")]
    scores = fresh_scores(references + [checked[i] for i in ids], args.fresh_blocks, FRESH_SEED)
    ppo, zero, fresh = scores[0], scores[1], dict(zip(ids, scores[2:]))
    seeds = args.fresh_blocks * get_budget("smoke").seeds

    def versus_ppo(key: tuple[str, int]) -> Estimate | None:
        mine = fresh[key]
        return None if mine is None or ppo is None else paired_difference([mine], [ppo])

    print(
        f"\n{args.proposals} GP proposals per campaign, smoke budget, seed {args.seed}; fresh "
        f"check: {seeds} seeds none of the campaigns used, paired with PPO on them\n"
    )
    header = (
        f"{'campaign':<30}{'proposals':>10}{'re-evaluated':>13}{'sandbox s':>10}{'re-eval s':>10}"
    )
    print(header + f"{'labels':>8}{'survive':>9}{'precision':>11}{'strict':>8}")
    figures: dict = {
        "proposals": args.proposals,
        "fresh_seeds": seeds,
        "seed": args.seed,
        "arms": {},
        "zero_minus_ppo": None,
        "best_lcb_minus_best_control": None,  # where both arms ran and scored
        "best_lcb_minus_best_mean": None,
    }
    for arm in arms:
        checks = [versus_ppo((arm.name, i)) for i, _ in arm.labelled]
        survive = sum(d is not None and d.point > 0 for d in checks)
        strict = sum(d is not None and d.excludes_zero() and d.point > 0 for d in checks)
        precision = f"{survive / len(checks):.0%}" if checks else "no labels"
        print(
            f"{arm.name:<30}{arm.proposals:>10}{arm.reevaluated:>13}{arm.sandbox_seconds:>10.0f}"
            f"{arm.reevaluation_seconds:>10.0f}{len(checks):>8}{survive:>9}{precision:>11}"
            f"{strict:>8}"
        )
        figures["arms"][SHORT[arm.name]] = {
            "proposals": arm.proposals,
            "reevaluated": arm.reevaluated,
            "sandbox_s": round(arm.sandbox_seconds, 1),
            "reevaluation_s": round(arm.reevaluation_seconds, 1),
            "labels": len(checks),
            "survive": survive,
            "precision": round(survive / len(checks), 3) if checks else None,
            "strict": strict,
            "best_fitness": None,
            "best_minus_ppo": None,
        }
    if zero is not None and ppo is not None:
        d = paired_difference([zero], [ppo])
        print(f"\nroom to improve: the zero drift minus PPO, {d.describe(3)}")
        figures["zero_minus_ppo"] = _estimate(d)
    print("\nbest candidate of each campaign, on the fresh seeds:")
    for arm in arms:
        key = (arm.name, arm.best[0]) if arm.best else None
        if key is None or fresh[key] is None:
            print(f"  {arm.name:<30} none scored on the fresh seeds")
            continue
        own, d = iqm_estimate([fresh[key]]), versus_ppo(key)
        print(
            f"  {arm.name:<30} #{arm.best[0]}: fitness {own.describe(3)}, "
            f"minus PPO {d.point:+.3f} {d.interval_text(3)}"
        )
        figures["arms"][SHORT[arm.name]]["best_fitness"] = _estimate(own)
        figures["arms"][SHORT[arm.name]]["best_minus_ppo"] = _estimate(d)
    bests = {a.name: fresh.get((a.name, a.best[0])) for a in arms if a.best}
    for one, other in (("lcb", "control"), ("lcb", "mean")):
        mine, theirs = bests.get(ARMS[one][0]), bests.get(ARMS[other][0])
        if mine and theirs:
            d = paired_difference([mine], [theirs])
            print(
                f"\nbest of {ARMS[one][0]} minus best of {ARMS[other][0]}: {d.describe(3)} "
                f"({seeds} paired seeds)"
            )
            figures[f"best_{one}_minus_best_{other}"] = _estimate(d)
    print(json.dumps(figures))


def _estimate(d: Estimate | None) -> dict | None:
    """An estimate as plain numbers for the JSON line (low/high None without an interval)."""
    if d is None:
        return None
    return {
        "point": round(float(d.point), 4),
        "low": None if d.low is None else round(float(d.low), 4),
        "high": None if d.high is None else round(float(d.high), 4),
        "seeds": d.seeds,
    }


if __name__ == "__main__":
    main()
