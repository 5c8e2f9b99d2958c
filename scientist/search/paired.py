"""Candidates against the campaign's baselines, seed by seed.

Every candidate of a campaign trains block b of seeds from the same keys and is scored on the
same episodes as the campaign's PPO and DPO baselines (search/seed_blocks.py), so seed i of
a candidate and seed i of PPO in one block saw the same luck. The difference of their
normalised scores over the blocks both have is what a paired interval rests on. A candidate
"beats PPO" only when it has been re-evaluated on fresh seeds and a lower bound over those
fresh blocks alone lies above zero: the search block picked the candidate, so its
luck is in it (a winner's curse that `benchmarks.label_precision` measures at about three
times the false labels) and it cannot confirm it. Its fitness still pools every block.

A campaign tests many candidates, and at 95 % each one that re-evaluates 20 would print a
false label about half the time. So the label rests on a one-sided lower bound (Student's t
over the fresh seeds) whose error is Bonferroni-divided over every label the campaign could
print (its re-evaluated candidates times the references): when nothing beats PPO, a
campaign prints any "beats" label with probability at most FAMILY_ERROR
(`benchmarks.label_precision` measures that and the recall it costs).
"""

from dataclasses import dataclass

from archive import reads
from archive.db import Session
from archive.schema import Candidate, EvaluationRound
from sandbox.fitness import CONFIDENCE, Estimate, paired_difference, paired_lower_bound
from sandbox.vocabulary import META_TRAIN, Origin, Review, Status
from scientist.search.seed_blocks import SEARCH_BLOCK

REFERENCES = ("ppo", "dpo")  # the baselines a candidate is labelled against
FAMILY_ERROR = 0.05  # a campaign's chance of any false "beats" label when nothing beats


def label_error(claims: int) -> float:
    """The error each label's lower bound may have when a campaign could print `claims` labels
    (Bonferroni), never more than the lower end of one candidate's 95 % interval."""
    return min((1.0 - CONFIDENCE) / 2.0, FAMILY_ERROR / max(claims, 1))


@dataclass(frozen=True)
class Paired:
    """A candidate's meta-train difference from one baseline over the blocks both trained: the
    search block before re-evaluation, the fresh blocks alone after it."""

    baseline: str
    difference: Estimate
    blocks: tuple[int, ...]
    reevaluated: bool  # re-evaluated: `blocks` are fresh ones, never the search's
    # the campaign-wide lower bound the label rests on, and how many labels it is corrected for
    bound: float | None = None
    claims: int = 1

    @property
    def beats(self) -> bool:
        return self.reevaluated and self.bound is not None and self.bound > 0.0

    @property
    def label(self) -> str | None:
        return f"beats {self.baseline.upper()}" if self.beats else None

    def describe(self, digits: int = 3) -> str:
        d = self.difference
        text = f"vs {self.baseline.upper()} {d.point:+.{digits}f} {d.interval_text(digits)}"
        if self.reevaluated and self.bound is not None:
            text += f", campaign-wide bound {self.bound:+.{digits}f} ({self.claims} labels tested)"
        return text


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
    (a candidate with no block in common with a baseline gets no entry for it). A
    re-evaluated candidate's label bound is corrected for every label its campaign could
    print, counted over the whole campaign whichever candidates are asked about."""
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
        claims = reads.reevaluated_proposal_count(session, campaign_id) * len(baselines)
        for c in members:
            fresh = [r for r in rounds[c.id] if r.block != SEARCH_BLOCK]
            reviewed = c.review == Review.DONE and bool(fresh)
            result[c.id] = []
            for name, baseline in baselines.items():
                mine = fresh if reviewed else rounds[c.id]
                ours, theirs, blocks = paired_rounds(mine, rounds[baseline.id])
                if blocks:
                    bound = paired_lower_bound(ours, theirs, label_error(claims))
                    result[c.id].append(
                        Paired(
                            name, paired_difference(ours, theirs), blocks, reviewed, bound, claims
                        )
                    )
    return result


def labels(paired: list[Paired]) -> list[str]:
    """ "beats PPO", "beats DPO": what a candidate has earned."""
    return [p.label for p in paired if p.label]
