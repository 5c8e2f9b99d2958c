"""Parent selection from the archive: islands, rank-based sampling with exploration, and
ring migration; or, for the best-of-N control arm, the task's baselines and nothing else.

An island's members are the rows of island_member for it: its own candidates, the
baselines (members of every island) and migrants explicitly moved there. Parents are drawn
only from there, so islands evolve apart until a migration says otherwise.
"""

import random
from dataclasses import dataclass

from archive import reads, writes
from archive.db import Engine, transaction
from archive.schema import Candidate
from sandbox.vocabulary import Selection, Status
from scientist.proposers.base import ParentView


@dataclass(frozen=True)
class SelectionConfig:
    mode: Selection = Selection.EVOLUTION
    islands: int = 2
    exploration: float = (
        0.2  # chance a parent is drawn uniformly from the island instead of by rank
    )
    rank_pressure: float = 2.5  # rank = floor(n * u**pressure): larger favours the top more
    migration_interval: int = 2  # generations between migrations (0: never)
    migrants: int = 1  # best members copied from each island to the next one


class Selector:
    def __init__(self, engine: Engine, campaign_id: int, config: SelectionConfig):
        self.engine, self.campaign_id, self.config = engine, campaign_id, config

    # -- parents ---------------------------------------------------------------------------
    def scored_count(self, island: int) -> int:
        with transaction(self.engine) as session:
            return reads.scored_member_count(session, self.campaign_id, island)

    def sample_parent_ids(self, island: int, k: int, rng: random.Random) -> list[int]:
        """Up to k distinct parents of the island, by fitness rank with exploration. Two
        indexed queries per parent: the member count, then the member at the drawn rank.
        The best-of-N control arm draws from the baselines alone."""
        if self.config.mode is Selection.NONE:
            baselines = self._baselines(island)
            return rng.sample(baselines, min(k, len(baselines)))
        with transaction(self.engine) as session:
            n = reads.scored_member_count(session, self.campaign_id, island)
            chosen: list[int] = []
            for _ in range(min(k, n) * 4):
                if len(chosen) == min(k, n):
                    break
                rank = (
                    rng.randrange(n)
                    if rng.random() < self.config.exploration
                    else min(n - 1, int(n * rng.random() ** self.config.rank_pressure))
                )
                candidate_id = reads.member_at_rank(session, self.campaign_id, island, rank)
                if candidate_id not in chosen:
                    chosen.append(candidate_id)
            return chosen

    def best_ids(self, island: int, k: int) -> list[int]:
        if self.config.mode is Selection.NONE:
            return self._baselines(island)[:k]
        with transaction(self.engine) as session:
            return reads.best_member_ids(session, self.campaign_id, island, k)

    def _baselines(self, island: int) -> list[int]:
        """The campaign's scored baselines that seed the search (members of every island;
        references only are members of none), in id order."""
        with transaction(self.engine) as session:
            return sorted(
                c.id
                for c in reads.scored_baselines(session, self.campaign_id).values()
                if reads.membership(session, self.campaign_id, island, c.id) is not None
            )

    def recent_failure_ids(self, island: int, k: int) -> list[int]:
        if self.config.mode is Selection.NONE:
            return []  # the control arm learns nothing from results, failures included
        with transaction(self.engine) as session:
            return reads.recent_failure_ids(session, self.campaign_id, island, k)

    def views(self, ids: list[int]) -> list[ParentView]:
        if not ids:
            return []
        with transaction(self.engine) as session:
            rows = reads.candidates_by_id(session, ids)
        return [parent_view(rows[i]) for i in ids if i in rows]

    # -- migration -------------------------------------------------------------------------
    def migrate(self, generation: int) -> list[tuple[int, int, int]]:
        """Ring migration before `generation`: each island's best `migrants` scored members
        join the next island. Happens once per generation, also across resumes (the event
        key is unique). Returns (candidate, from island, to island)."""
        c = self.config
        if (
            c.mode is Selection.NONE
            or c.islands < 2
            or c.migration_interval <= 0
            or generation <= 1
            or (generation - 1) % c.migration_interval
        ):
            return []
        key = f"migration:{generation}"
        with transaction(self.engine) as session:
            if reads.has_event(session, self.campaign_id, key):
                return []
            moves = []
            for island in range(c.islands):
                target = (island + 1) % c.islands
                for candidate_id in reads.best_member_ids(
                    session, self.campaign_id, island, c.migrants
                ):
                    if reads.membership(session, self.campaign_id, target, candidate_id) is None:
                        moves.append((candidate_id, island, target))
            # Inserted after all reads, so a migrant does not travel on around the ring at once.
            for candidate_id, source, target in moves:
                writes.add_migrant(
                    session, self.campaign_id, candidate_id, source, target, generation
                )
            summary = ", ".join(f"#{m} {s}→{t}" for m, s, t in moves) or "nothing new"
            writes.log_event(
                session,
                self.campaign_id,
                "migration",
                f"before generation {generation}: {summary}",
                {"generation": generation, "moves": moves},
                key=key,
            )
            return moves


def parent_view(candidate: Candidate) -> ParentView:
    return ParentView(
        id=candidate.id,
        code=candidate.code or "",
        status=candidate.status,
        fitness=candidate.fitness,
        origin=candidate.origin,
        summary=score_summary(candidate),
        error=failure_summary(candidate),
    )


def score_summary(candidate: Candidate) -> str:
    lines = []
    for split, envs in (candidate.per_env or {}).items():
        for env_id, result in envs.items():
            normalised = result.get("normalised", {})
            lines.append(
                f"{split} {env_id}: normalised IQM {normalised.get('iqm', float('nan')):.3f}, "
                f"return IQM {result.get('return_iqm', float('nan')):.2f}"
            )
    return "\n".join(lines)


def failure_summary(candidate: Candidate) -> str:
    """The failing stage and its detail, with the check counterexamples when there are any."""
    if candidate.status in (Status.OK, Status.PENDING):
        return ""
    stage = next((s for s in candidate.stages if s.get("status") != Status.OK), None)
    parts = [
        f"status {candidate.status}"
        + (f" at stage {stage['name']}: {stage.get('detail', '')}" if stage else "")
    ]
    for check in (candidate.checks or {}).get("checks", []):
        if not check.get("passed", True):
            example = check.get("counterexample")
            parts.append(
                f"check {check.get('name')}: {check.get('detail', '')}"
                + (f" (counterexample: {example})" if example else "")
            )
    return "\n".join(parts)[:3000]
