"""How often "beats PPO" is right when the truth is known: three label rules on simulated
campaigns with recorded seed noise, side by side.

    python -m benchmarks.label_precision                       # 1,000 campaigns per row
    python -m benchmarks.label_precision --campaigns 4000 --proposals 80 --tested 20

Precision needs candidates that really beat PPO, and at the CPU smoke budget there are none to
find: the zero drift scores like PPO over 64 paired seeds (scientist/report/reproduction).
So this plants them. Each simulated campaign draws PPO's meta-train scores for blocks 0-4
from the 64 recorded CartPole seeds (the smoke budget's meta-train environment), and gives
each of `--proposals` candidates a true effect: +effect with probability `base rate`, else 0.
A candidate's score on a seed is PPO's on that seed plus its effect plus a paired residual
drawn from the recorded DPO - PPO and zero - PPO differences (centred: both drifts are as good
as PPO at this budget), so candidate noise has the recorded size and correlation with PPO's.

  search: no re-evaluation; labelled when the 2-seed search fitness is above PPO's.
  pooled: the `--tested` best by search fitness (an island's top k, over a campaign) get
          3 fresh blocks; labelled when the paired interval over all 8 seeds, the search's
          included, lies above zero (the rule before the search block was left out).
  fresh:  the same candidates get the smoke budget's 4 fresh blocks; labelled when the
          paired 95 % interval over those 8 fresh seeds alone lies above zero (the rule
          before campaign-wide control).
  family: the same fresh seeds, labelled when the one-sided t bound at the campaign-wide
          error (`label_error`: Bonferroni over `--tested` candidates times the two
          references) lies above zero: `Paired.beats`, the rule campaigns use.

Precision is the share of labels on candidates with a positive effect, pooled over
campaigns; recall the share of real improvements labelled; "any false" the share of
campaigns that print at least one label on a candidate with no effect (at base rate 0, the
chance a campaign prints a false discovery at all). A simulation, not a campaign:
`benchmarks.false_elites` measures real campaigns.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from sandbox.fitness import paired_difference, paired_lower_bound
from scientist.search.paired import REFERENCES, label_error

RECORDED = Path(__file__).parents[1] / "scientist" / "report" / "reproduction" / "smoke.json"
ENV = "CartPole-v1"  # the smoke budget's meta-train environment
RUNS = 2  # the smoke budget's seeds per block
RULES = ("search", "pooled", "fresh", "family")


def recorded_noise(path: Path = RECORDED) -> tuple[np.ndarray, np.ndarray]:
    """PPO's per-seed scores and the centred paired residuals of the drifts as good as PPO."""
    scores = json.loads(path.read_text())["scores"]
    ppo = np.asarray(scores["ppo"][ENV])
    residuals = []
    for drift in ("dpo", "zero"):
        difference = np.asarray(scores[drift][ENV]) - ppo
        residuals.append(difference - difference.mean())
    return ppo, np.concatenate(residuals)


def beats(candidate: np.ndarray, ppo: np.ndarray, blocks: slice, claims: int) -> bool:
    """Labelled on these blocks: by the 95 % interval (claims 0) or the campaign-wide bound."""
    ours, theirs = [candidate[blocks].ravel()], [ppo[blocks].ravel()]
    if claims == 0:
        d = paired_difference(ours, theirs)
        return d.has_interval and d.low > 0.0
    bound = paired_lower_bound(ours, theirs, label_error(claims))
    return bound is not None and bound > 0.0


def campaign(rng, ppo, residuals, proposals: int, tested: int, base_rate: float, effect: float):
    """Per rule, the labels and the true ones; and the count of real improvements."""
    blocks = rng.choice(ppo, size=(5, RUNS), replace=False)  # PPO's search block, then fresh
    real = rng.random(proposals) < base_rate
    truth = np.where(real, effect, 0.0)
    candidates = blocks[None] + truth[:, None, None] + rng.choice(residuals, (proposals, 5, RUNS))
    search = candidates[:, 0].mean(axis=1)  # the 2-seed IQM is the mean
    labelled = {"search": search > blocks[0].mean()}
    top = np.argsort(search)[-tested:]
    for rule, seeds, claims in (
        ("pooled", slice(0, 4), 0),
        ("fresh", slice(1, 5), 0),
        ("family", slice(1, 5), tested * len(REFERENCES)),
    ):
        labelled[rule] = np.zeros(proposals, bool)
        labelled[rule][top] = [beats(candidates[i], blocks, seeds, claims) for i in top]
    counts = {rule: (int(m.sum()), int((m & real).sum())) for rule, m in labelled.items()}
    return counts, int(real.sum())


def share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--proposals", type=int, default=40)
    parser.add_argument("--tested", type=int, default=10, help="re-evaluated per campaign")
    parser.add_argument("--base-rates", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.25])
    parser.add_argument("--effects", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ppo, residuals = recorded_noise()
    print(
        f"{args.campaigns} simulated campaigns of {args.proposals} proposals per row, the "
        f"{args.tested} best re-evaluated; noise from {ppo.size} recorded {ENV} seeds (paired "
        f"residual sd {residuals.std(ddof=1):.2f}); labels per campaign, precision, recall\n"
    )
    print(
        f"{'base rate':>9}{'effect':>8}"
        + "".join(f" | {rule:>6}: labels prec. recall any false" for rule in RULES)
    )
    headline = {}
    rng = np.random.default_rng(args.seed)
    for base_rate in args.base_rates:
        for effect in args.effects if base_rate > 0 else [0.0]:
            labels = dict.fromkeys(RULES, 0)
            right = dict.fromkeys(RULES, 0)
            any_false = dict.fromkeys(RULES, 0)
            real = 0
            for _ in range(args.campaigns):
                counts, planted = campaign(
                    rng, ppo, residuals, args.proposals, args.tested, base_rate, effect
                )
                real += planted
                for rule, (n, true) in counts.items():
                    labels[rule] += n
                    right[rule] += true
                    any_false[rule] += n > true
            cells = [
                f" | {labels[rule] / args.campaigns:>14.2f}"
                f"{share(right[rule], labels[rule]):>6}{share(right[rule], real):>7}"
                f"{any_false[rule] / args.campaigns:>10.1%}"
                for rule in RULES
            ]
            print(f"{base_rate:>9.2f}{effect:>+8.2f}" + "".join(cells), flush=True)
            headline[f"{base_rate:g}/{effect:+g}"] = {
                rule: {
                    "labels_per_campaign": labels[rule] / args.campaigns,
                    "recall": right[rule] / real if real else None,
                    "any_false_share": any_false[rule] / args.campaigns,
                }
                for rule in RULES
            }
    print(json.dumps({"tested": args.tested, "campaigns": args.campaigns, "rows": headline}))


if __name__ == "__main__":
    main()
