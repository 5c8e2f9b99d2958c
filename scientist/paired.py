"""Candidates against the campaign's baselines, seed by seed.

Every candidate of a campaign trains block b of seeds from the same keys and is scored on the
same episodes as the campaign's PPO and DPO baselines (scientist/seed_blocks.py), so seed i of
a candidate and seed i of PPO in one block saw the same luck. The difference of their
normalised scores, pooled over the blocks both have, is what a paired interval rests on. A
candidate "beats PPO" only when it has been re-evaluated on fresh seeds and that interval
excludes zero from above: search-time scores picked the candidate, so they cannot confirm it.
"""

from dataclasses import dataclass

from sqlmodel import Session

from archive import reads
from archive.schema import Candidate, EvaluationRound
from sandbox.fitness import Estimate, paired_difference
from sandbox.vocabulary import Origin, Review, Status
from scientist.seed_blocks import META_TRAIN

REFERENCES = ("ppo", "dpo")  # the baselines a candidate is labelled against


@dataclass(frozen=True)
class Paired:
    """A candidate's meta-train difference from one baseline over the blocks both trained."""

    baseline: str
    difference: Estimate
    blocks: tuple[int, ...]
    reevaluated: bool  # the candidate has rounds on fresh seeds (not only the search's)

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
            result[c.id] = []
            for name, baseline in baselines.items():
                ours, theirs, blocks = paired_rounds(rounds[c.id], rounds[baseline.id])
                if blocks:
                    result[c.id].append(
                        Paired(
                            name,
                            paired_difference(ours, theirs),
                            blocks,
                            c.review == Review.DONE and any(b > 0 for b in blocks),
                        )
                    )
    return result


def labels(paired: list[Paired]) -> list[str]:
    """ "beats PPO", "beats DPO": what a candidate has earned."""
    return [p.label for p in paired if p.label]
