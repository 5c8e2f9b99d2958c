"""Rediscovery: starting from the zero drift alone, does search reach PPO at the discovery
budget, and how fast? Three arms, one after another on this machine, each given the same
wall-clock seconds of evaluation:

- `gp_evolution`: a mutation-proposer campaign with evolutionary selection;
- `gp_best_of_n`: the same proposer with no selection (parents: the zero drift, always);
- `es`: the evosax baseline meta-learning an LPO drift network (no PPO initialisation);
- `gp_discovery` (not run by default): evolution seeded from all of the task's baselines
  (PPO, DPO and zero are parents): the discovery run itself, does anything beat PPO?

In both campaigns PPO and DPO are trained as references (normalisers, paired comparators)
and are never parents, inspirations or migrants (`--seed-baseline zero`). An arm "reaches
PPO" when a candidate's paired difference from PPO over fresh seeds has a 95 % lower bound of
at least REACHED (-0.05): in a campaign, on the fresh blocks of its elite re-evaluation
(timed from the campaign's start; also when the labels' campaign-wide bound, corrected for
every candidate re-evaluated, first reached it); then each arm's winner (and, for a
campaign, its best at the end: the highest lower bound) and PPO are trained again on seeds
no arm has seen (`--fresh-blocks` blocks), paired, and finally at the `quick` budget's
meta-train (Breakout-MinAtar, 1e6 steps), where PPO normalises to 1 (transfer).

    python -m benchmarks.rediscovery                         # 3 arms x 1 h, fresh seeds, quick
    python -m benchmarks.rediscovery --seconds 900 --no-quick
    python -m benchmarks.rediscovery --tiny                  # minutes: the CI check of the path
    python -m benchmarks.rediscovery --db URL --arms gp_evolution --check-only --fresh-blocks 160
                                                             # the final checks again, more seeds

The last line is JSON: per arm `reached_ppo_seconds` (null if never), `quick_score` (null if
not trained), the winner's fresh paired difference and the seconds the arm used.
"""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from archive import reads
from archive.db import open_engine, transaction
from harness.cascade import evaluate_batch, program_groups
from sandbox.budgets import get_budget
from sandbox.fitness import paired_difference
from sandbox.tasks import load_task
from sandbox.vocabulary import META_TRAIN, EventKind, Fidelity, Origin, Review, Selection, Status
from scientist.campaign.config import CampaignConfig
from scientist.campaign.loop import CampaignLoop
from scientist.es.campaign import ESCampaign
from scientist.es.trainer import ESSettings
from scientist.proposers.mutation import MutationProposer
from scientist.search.paired import versus_baselines
from scientist.search.seed_blocks import seed_block

TASK = "mirror_drift"
REACHED = -0.05  # a paired 95 % lower bound vs PPO at least this: PPO's level
FRESH_SEED = 777_000_001  # the final check's seeds: no arm trains on them
ARMS = ("gp_evolution", "gp_best_of_n", "es", "gp_discovery")
DEFAULT_ARMS = ARMS[:3]


@dataclass(frozen=True)
class CampaignArm:
    selection: Selection
    seed_baselines: list[str]  # the baselines it starts from (empty: all of them)
    # the winner: the first candidate to reach PPO (rediscovery) or the re-evaluated one with
    # the highest lower bound vs PPO (discovery: anything beyond PPO?)
    first_to_reach: bool = True


CAMPAIGN_ARMS = {
    "gp_evolution": CampaignArm(Selection.EVOLUTION, ["zero"]),
    "gp_best_of_n": CampaignArm(Selection.NONE, ["zero"]),
    "gp_discovery": CampaignArm(Selection.EVOLUTION, [], first_to_reach=False),
}


@dataclass
class Arm:
    name: str
    seconds: float = 0.0  # wall seconds the arm used, its final evaluations included
    candidates: int = 0  # evaluated (campaigns) or population members trained (ES)
    winner_code: str | None = None
    winner_note: str = ""
    reached_ppo_seconds: float | None = None
    # the same with the lower bound corrected for every label the campaign could print (the
    # labels' campaign-wide bound, at the campaign's final count of re-evaluated candidates)
    reached_ppo_campaign_wide_seconds: float | None = None
    # (seconds since start, best paired difference vs PPO, its 95 % lower bound) over time
    timeline: list[tuple[float, float, float | None]] = field(default_factory=list)
    fresh: dict | None = None  # the winner vs PPO on the final check's fresh seeds
    quick_score: float | None = None
    # A rediscovery arm's first to reach PPO is picked by its re-evaluation's luck among
    # many; the arm's state at its end (the highest lower bound vs PPO) is checked beside it.
    end: "Arm | None" = None

    def entrants(self) -> list["Arm"]:
        return [a for a in (self, self.end) if a is not None and a.winner_code]


# The grammar's pieces that carry PPO's clip: without them no GP arm can assemble PPO.
CLIP = ("r-clip(r)", "relu((r-clip(r))*X)")


# -- the campaign arms --------------------------------------------------------------------------
def campaign_arm(engine, name: str, seconds: float, args) -> Arm:
    kind = CAMPAIGN_ARMS[name]
    config = CampaignConfig(
        name=name,
        task=TASK,
        budget=args.budget,
        sandbox="process",
        generations=10_000,  # the time cap ends it
        islands=args.islands,
        population=args.population,
        workers=args.workers,
        seed=args.seed,
        selection=kind.selection,
        seed_baselines=kind.seed_baselines,
        max_seconds=seconds,
        reevaluation_blocks=args.reevaluation_blocks,
    )
    start = time.monotonic()
    proposer = MutationProposer(load_task(TASK), without=args.without)
    CampaignLoop(engine, config, proposer).run()
    return read_arm(engine, name, time.monotonic() - start)


def read_arm(engine, name: str, seconds: float) -> Arm:
    """A campaign arm as its archive holds it: its timeline, when it reached PPO, its winner."""
    kind = CAMPAIGN_ARMS[name]
    arm = Arm(name, seconds=seconds)
    with transaction(engine) as session:
        campaign = reads.get_campaign(session, name)
        rows = reads.candidates(session, campaign.id)
        proposed = [c for c in rows if c.origin != Origin.BASELINE]
        arm.candidates = sum(c.status != Status.PENDING for c in proposed)
        reviewed = [c for c in proposed if c.review == Review.DONE and c.status == Status.OK]
        paired = versus_baselines(session, reviewed)
        finished = _review_times(session, campaign.id, campaign.created_at)
    best, highest = None, None  # the best point so far (the timeline), the highest lower bound
    first = None  # the first to reach PPO
    for c in sorted(reviewed, key=lambda c: finished.get(c.id, float("inf"))):
        ppo = next((p for p in paired.get(c.id, []) if p.baseline == "ppo"), None)
        if ppo is None or c.id not in finished:
            continue
        d = ppo.difference
        if best is None or d.point > best[1]:
            best = (c, d.point, d.low)
            arm.timeline.append((finished[c.id], d.point, d.low))
        if d.low is not None and (highest is None or d.low > highest[1]):
            highest = (c, d.low)
        wide = ppo.bound is not None and ppo.bound >= REACHED
        if arm.reached_ppo_campaign_wide_seconds is None and wide:
            arm.reached_ppo_campaign_wide_seconds = finished[c.id]
        if arm.reached_ppo_seconds is None and d.low is not None and d.low >= REACHED:
            arm.reached_ppo_seconds = finished[c.id]
            if kind.first_to_reach:
                arm.winner_code, arm.winner_note = c.code, f"#{c.id}, first to reach PPO"
                first = c
    if highest is not None:
        c, note = highest[0], f"#{highest[0].id}, highest lower bound vs PPO ({highest[1]:+.3f})"
        if arm.winner_code is None:
            arm.winner_code, arm.winner_note = c.code, note
        elif c is not first:  # it reached PPO too (its bound is above the first's), later
            arm.end = Arm(f"{name} (end)", seconds, arm.candidates, c.code, note)
            arm.end.reached_ppo_seconds = finished[c.id]
    if arm.winner_code is None and best is not None:
        c = best[0]
        arm.winner_code, arm.winner_note = c.code, f"#{c.id}, best re-evaluated"
    if arm.winner_code is None and proposed:  # nothing re-evaluated: the best screened
        scored = [c for c in proposed if c.status == Status.OK]
        if scored:
            c = max(scored, key=lambda c: c.fitness)
            arm.winner_code, arm.winner_note = c.code, f"#{c.id}, best screened (none promoted)"
    return arm


def _review_times(session, campaign_id: int, created_at) -> dict[int, float]:
    """Seconds from the campaign's creation to the end of each candidate's re-evaluation."""
    times = {}
    for event in reads.events(session, campaign_id, limit=100_000):
        if event.kind == EventKind.REEVALUATION:
            for i in event.data.get("candidate_ids", []):
                times.setdefault(i, (event.time - created_at).total_seconds())
    return times


# -- the ES arm ---------------------------------------------------------------------------------
def es_arm(engine, seconds: float, args) -> Arm:
    """Generations until the next one would pass `seconds`: one first (it compiles), then as
    many as the generations' median time says fit, again while time is left. Each run ends
    with its mean network rendered and evaluated; the winner is the latest that is valid."""
    settings = ESSettings(
        population=args.es_population, seeds=args.es_seeds, ppo_init=False, sigma=0.1
    )
    start, arm, done, rendered, campaign_id = time.monotonic(), Arm("es"), 0, [], None
    while True:
        if done:
            with transaction(engine) as session:
                times = [c.wall_seconds for c in reads.es_checkpoints(session, campaign_id)]
            more = int(
                (seconds - (time.monotonic() - start)) // max(statistics.median(times), 1e-3)
            )
            if more < 1:
                break
        else:
            more = 1
        done += more
        candidate = ESCampaign(  # a screen, as the campaign arms' proposals get
            engine,
            settings,
            "es",
            TASK,
            args.budget,
            done,
            args.seed,
            sandbox="process",
            screening=True,
        ).run()
        rendered.append((done, candidate))
        with transaction(engine) as session:
            campaign_id = reads.find_campaign(session, "es").id
    arm.seconds = time.monotonic() - start
    arm.candidates = done * settings.population
    with transaction(engine) as session:
        checkpoints = reads.es_checkpoints(session, campaign_id)
    elapsed = 0.0
    for checkpoint in checkpoints:
        elapsed += checkpoint.wall_seconds
        if checkpoint.mean_fitness is not None:
            arm.timeline.append((elapsed, checkpoint.mean_fitness, None))
    for generation, candidate in reversed(rendered):
        if candidate is not None and candidate.status == Status.OK:
            arm.winner_code = candidate.code
            arm.winner_note = f"#{candidate.id}, the ES mean after generation {generation}"
            break
    invalid = [f"{g}: {c.status}" for g, c in rendered if c is not None and c.status != Status.OK]
    if invalid:
        arm.winner_note += f" (means not scored, by generation: {', '.join(invalid)})"
    return arm


# -- the final checks ---------------------------------------------------------------------------
def fresh_check(arms: list[Arm], budget: str, blocks: int) -> None:
    """Every winner and PPO in one batch on `blocks` blocks of seeds no arm saw, paired."""
    ppo = load_task(TASK).baseline_source("ppo")
    entrants = [a for arm in arms for a in arm.entrants()]
    if not entrants:
        return
    seeds = [
        seed_block(b, FRESH_SEED, FRESH_SEED + 1, get_budget(budget).seeds) for b in range(blocks)
    ]
    evaluations = _evaluate(
        [ppo, *(a.winner_code for a in entrants)],
        budget,
        seed=seeds[0].training_seed,
        eval_seed=seeds[0].eval_seed,
        further_blocks=[s.seeds for s in seeds[1:]],
    )
    reference = _per_seed(evaluations[0])
    for arm, evaluation in zip(entrants, evaluations[1:], strict=True):
        mine = _per_seed(evaluation)
        if reference is None or mine is None:
            arm.fresh = {"status": evaluation.status}
            continue
        d = paired_difference(mine, reference)
        arm.fresh = {"difference": d.point, "low": d.low, "high": d.high, "seeds": d.seeds}


def _evaluate(sources: list[str], budget: str, **seeds) -> list:
    """The sources' meta-train screens, in order, on the same seeds: expressions and code
    batched apart (harness/cascade.py `program_groups`)."""
    evaluations = [None] * len(sources)
    for group in program_groups(TASK, sources):
        batch = [sources[i] for i in group]
        done = evaluate_batch(
            TASK, batch, budget, sandbox="process", fidelity=Fidelity.SCREEN, **seeds
        )
        for i, evaluation in zip(group, done, strict=True):
            evaluations[i] = evaluation
    return evaluations


def _per_seed(evaluation) -> list[list[float]] | None:
    """Per meta-train environment, the normalised score of every seed over the blocks."""
    blocks = evaluation.per_block()
    if any(b.status != Status.OK for b in blocks):
        return None
    envs = sorted(blocks[0].per_env[META_TRAIN])
    return [
        [x for b in blocks for x in b.per_env[META_TRAIN][env]["normalised"]["scores"]]
        for env in envs
    ]


def quick_check(arms: list[Arm]) -> float | None:
    """The winners and PPO at the quick budget's meta-train environments; PPO's own score."""
    ppo = load_task(TASK).baseline_source("ppo")
    entrants = [a for arm in arms for a in arm.entrants()]
    evaluations = _evaluate(
        [ppo, *(a.winner_code for a in entrants)],
        "quick",
        seed=FRESH_SEED,
        eval_seed=FRESH_SEED + 1,
    )
    for arm, evaluation in zip(entrants, evaluations[1:], strict=True):
        arm.quick_score = evaluation.fitness
    return evaluations[0].fitness


# -- the command --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3600.0, help="per arm")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(DEFAULT_ARMS))
    parser.add_argument("--budget", default="discovery")
    parser.add_argument("--population", type=int, default=8, help="proposals per island")
    parser.add_argument("--islands", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--es-population", type=int, default=16)
    parser.add_argument("--es-seeds", type=int, default=2)
    parser.add_argument("--fresh-blocks", type=int, default=4, help="of the budget's seeds")
    parser.add_argument(
        "--reevaluation-blocks", type=int, default=None, help="per promotion (default: budget's)"
    )
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", help="archive URL (default: a new SQLite file)")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="run no arm: read the campaign arms from --db and run the final checks again",
    )
    parser.add_argument("--tiny", action="store_true", help="the path in minutes, for CI")
    parser.add_argument("--figure", help="a PNG of each arm's best paired difference over time")
    parser.add_argument(
        "--without",
        nargs="+",
        default=[],
        metavar="NAME",
        help="grammar terminals and wrappers the GP arms may not use (--without-clip: PPO's)",
    )
    parser.add_argument(
        "--without-clip",
        action="store_true",
        help=f"leave out PPO's clip: --without {' '.join(repr(n) for n in CLIP)}",
    )
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.population, args.islands = 10.0, 2, 1
        args.es_population, args.es_seeds, args.fresh_blocks, args.quick = 2, 1, 1, False
        args.reevaluation_blocks = 1
    args.without = [*args.without, *(CLIP if args.without_clip else ())]
    if args.check_only and (not args.db or "es" in args.arms):
        parser.error("--check-only reads campaign arms (not es) from an existing --db")
    db = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='rediscovery-')) / 'archive.db'}"
    engine = open_engine(db)
    print(f"archive {db}; {args.seconds:.0f} s per arm at the {args.budget} budget", flush=True)
    if args.without:
        print(f"the GP arms' grammar leaves out {', '.join(args.without)}", flush=True)

    arms = []
    for name in args.arms:
        if args.check_only:
            arm = read_arm(engine, name, args.seconds)
        elif name == "es":
            arm = es_arm(engine, args.seconds, args)
        else:
            arm = campaign_arm(engine, name, args.seconds, args)
        arms.append(arm)
        print(
            f"{arm.name}: {arm.candidates} candidates in {arm.seconds:.0f} s; reached PPO: "
            f"{_seconds(arm.reached_ppo_seconds)} (campaign-wide bound: "
            f"{_seconds(arm.reached_ppo_campaign_wide_seconds)}); "
            f"winner {arm.winner_note or 'none'}"
            + (f"; at its end {arm.end.winner_note}" if arm.end else ""),
            flush=True,
        )
        for seconds, point, low in arm.timeline:
            bound = "" if low is None else f" (95 % lower bound {low:+.3f})"
            what = "mean fitness" if name == "es" else "best paired vs PPO"
            print(f"    {seconds:7.0f} s  {what} {point:+.3f}{bound}", flush=True)

    fresh_check(arms, args.budget, args.fresh_blocks)
    ppo_quick = quick_check(arms) if args.quick else None
    print()
    print(
        f"{'arm':<20}{'candidates':>11}{'seconds':>9}{'reached PPO':>13}"
        f"{'fresh vs PPO':>28}{'quick':>8}"
    )
    for arm in (a for arm in arms for a in ([arm, arm.end] if arm.end else [arm])):
        fresh = arm.fresh or {}
        if "difference" in fresh:
            interval = (
                "" if fresh["low"] is None else f" [{fresh['low']:+.3f}, {fresh['high']:+.3f}]"
            )
            text = f"{fresh['difference']:+.3f}{interval}"
        else:
            text = fresh.get("status", "no winner")
        quick = "-" if arm.quick_score is None else f"{arm.quick_score:.2f}"
        print(
            f"{arm.name:<20}{arm.candidates:>11}{arm.seconds:>9.0f}"
            f"{_seconds(arm.reached_ppo_seconds):>13}{text:>28}{quick:>8}"
        )
    if ppo_quick is not None:
        print(f"PPO at the quick budget's meta-train, same seeds: {ppo_quick:.2f} (1 = reference)")
    if args.figure:
        plot_timelines(arms, args.figure)
        print(f"figure: {args.figure}")
    figures = {
        "seconds_per_arm": args.seconds,
        "budget": args.budget,
        "grammar_without": args.without,
        "ppo_quick_score": ppo_quick,
        "arms": {
            a.name: {
                "reached_ppo_seconds": a.reached_ppo_seconds,
                "reached_ppo_campaign_wide_seconds": a.reached_ppo_campaign_wide_seconds,
                "quick_score": a.quick_score,
                "fresh": a.fresh,
                "seconds": round(a.seconds, 1),
                "candidates": a.candidates,
                "end": a.end
                and {
                    "winner": a.end.winner_note,
                    "fresh": a.end.fresh,
                    "quick_score": a.end.quick_score,
                },
            }
            for a in arms
        },
    }
    print(json.dumps(figures))


def plot_timelines(arms: list[Arm], path: str) -> None:
    """Each campaign arm's best paired difference from PPO (with its 95 % lower bound) as
    its re-evaluations finish, over the arm's seconds; 0 is PPO's level."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), layout="constrained")
    axes = figure.add_subplot()
    for arm in arms:
        points = [(t, d, low) for t, d, low in arm.timeline if low is not None]
        if not points:
            continue
        points.append((max(arm.seconds, points[-1][0]), *points[-1][1:]))  # held to the end
        t, d, low = zip(*points, strict=True)
        line = axes.step(t, d, where="post", label=f"{arm.name}: best difference")[0]
        axes.step(t, low, where="post", linestyle=":", color=line.get_color(), label="its 95 % LB")
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.axhline(REACHED, color="grey", linewidth=0.8, linestyle="--", label="PPO's level (LB)")
    axes.set_xlabel("seconds since the campaign started")
    axes.set_ylabel("paired difference vs PPO (normalised)")
    axes.legend(fontsize="small")
    FigureCanvasAgg(figure).print_png(path)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f} s"


if __name__ == "__main__":
    main()
