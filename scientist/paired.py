"""Candidates against the campaign's baselines, seed by seed.

Every candidate of a campaign trains block b of seeds from the same keys and is scored on the
same episodes as the campaign's PPO and DPO baselines (scientist/seed_blocks.py), so seed i of
a candidate and seed i of PPO in one block saw the same luck. The difference of their
normalised scores over the blocks both have is what a paired interval rests on. A candidate
"beats PPO" only when it has been re-evaluated on fresh seeds and the interval over those
fresh blocks alone excludes zero from above: the search block picked the candidate, so its
luck is in it (a winner's curse that `benchmarks.label_precision` measures at about three
times the false labels) and it cannot confirm it. Its fitness still pools every block.
"""

from dataclasses import dataclass

from sqlmodel import Session

from archive import reads
from archive.schema import Candidate, EvaluationRound
from sandbox.fitness import Estimate, paired_difference
from sandbox.vocabulary import Origin, Review, Status
from scientist.seed_blocks import META_TRAIN, SEARCH_BLOCK

REFERENCES = ("ppo", "dpo")  # the baselines a candidate is labelled against


@dataclass(frozen=True)
class Paired:
    """A candidate's meta-train difference from one baseline over the blocks both trained: the
    search block before re-evaluation, the fresh blocks alone after it."""

    baseline: str
    difference: Estimate
    blocks: tuple[int, ...]
    reevaluated: bool  # re-evaluated: `blocks` are fresh ones, never the search's

    @property
    def beats(self) -> bool:
        return self.reevaluated and self.difference.has_interval and self.difference.low > 0.0

    @property
    def label(self) -> str | None:
        return f"beats {self.baseline.upper()}" if self.beats else None

    def describe(self, digits: int = 3) -> str:
        d = self.difference
        return f"vs {self.baseline.upper()} {d.point:+.{digits}f} {d.interval_text(digits)}"


def paired_rounds(
    candidate: list[EvaluationRound], baseline: list[EvaluationRound]
) -> tuple[list[list[float]], list[list[float]], tuple[int, ...]]:
    """Per meta-train environment, the two sides' per-seed scores over the blocks both have
    scored with the same number of runs, concatenated in block order."""
    theirs = {r.block: r for r in baseline if r.status == Status.OK}
    blocks = tuple(
        r.block
        for r in candidate
        if r.status == Status.OK and r.block in theirs and theirs[r.block].runs == r.runs
    )
    ours = {r.block: r for r in candidate}
    envs = sorted(ours[blocks[0]].scores.get(META_TRAIN, {})) if blocks else []

    def side(rounds: dict[int, EvaluationRound]) -> list[list[float]]:
        return [
            [x for b in blocks for x in rounds[b].scores[META_TRAIN][env]["normalised"]]
            for env in envs
        ]

    return side(ours), side(theirs), blocks


def versus_baselines(session: Session, candidates: list[Candidate]) -> dict[int, list[Paired]]:
    """Each scored, proposed candidate's paired differences from the campaign's PPO and DPO
    (a candidate with no block in common with a baseline gets no entry for it)."""
    result: dict[int, list[Paired]] = {}
    by_campaign: dict[int, list[Candidate]] = {}
    for c in candidates:
        if c.status == Status.OK and c.origin != Origin.BASELINE:
            by_campaign.setdefault(c.campaign_id, []).append(c)
    for campaign_id, members in by_campaign.items():
        baselines = {
            name: c
            for name, c in reads.scored_baselines(session, campaign_id).items()
            if name in REFERENCES
        }
        rounds = reads.rounds_of(
            session, [c.id for c in members] + [c.id for c in baselines.values()]
        )
        for c in members:
            fresh = [r for r in rounds[c.id] if r.block != SEARCH_BLOCK]
            reviewed = c.review == Review.DONE and bool(fresh)
            result[c.id] = []
            for name, baseline in baselines.items():
                mine = fresh if reviewed else rounds[c.id]
                ours, theirs, blocks = paired_rounds(mine, rounds[baseline.id])
                if blocks:
                    result[c.id].append(
                        Paired(name, paired_difference(ours, theirs), blocks, reviewed)
                    )
    return result


def labels(paired: list[Paired]) -> list[str]:
    """ "beats PPO", "beats DPO": what a candidate has earned."""
    return [p.label for p in paired if p.label]
