"""Island evolution: parents by fitness rank with exploration, inside an island; ring
migration between islands.

An island's members are the rows of island_member for it: its own candidates, the
baselines that seed the search (members of every island) and migrants explicitly moved
there. Parents are drawn only from there, so islands evolve apart until a migration says
otherwise.
"""

import random

from archive import reads, writes
from archive.db import transaction
from sandbox.vocabulary import EventKind, Selection
from scientist.search.strategy import ArchivedStrategy, Ask, Slot, StrategyKind


class IslandEvolution(ArchivedStrategy):
    def ask(self, slot: Slot, rng: random.Random) -> Ask:
        s = self.settings
        parents = self.sample_parent_ids(slot.island, s.parents, rng)
        with transaction(self.engine) as session:
            best = reads.best_member_ids(
                session, self.campaign_id, slot.island, s.inspirations + len(parents)
            )
            failures = reads.recent_failure_ids(session, self.campaign_id, slot.island, s.failures)
        inspirations = [i for i in best if i not in parents][: s.inspirations]
        return Ask(parents, inspirations, failures)

    def sample_parent_ids(self, island: int, k: int, rng: random.Random) -> list[int]:
        """Up to k distinct parents of the island, by fitness rank with exploration. Two
        indexed queries per parent: the member count, then the member at the drawn rank."""
        with transaction(self.engine) as session:
            n = reads.scored_member_count(session, self.campaign_id, island)
            chosen: list[int] = []
            for _ in range(min(k, n) * 4):
                if len(chosen) == min(k, n):
                    break
                rank = (
                    rng.randrange(n)
                    if rng.random() < self.settings.exploration
                    else min(n - 1, int(n * rng.random() ** self.settings.rank_pressure))
                )
                candidate_id = reads.member_at_rank(session, self.campaign_id, island, rank)
                if candidate_id not in chosen:
                    chosen.append(candidate_id)
            return chosen

    def before_generation(self, generation: int) -> None:
        self.migrate(generation)

    def migrate(self, generation: int) -> list[tuple[int, int, int]]:
        """Ring migration before `generation`: each island's best `migrants` scored members
        that the next island lacks join it. Happens once per generation, also across resumes
        (the event key is unique). Returns (candidate, from island, to island)."""
        s = self.settings
        if (
            s.islands < 2
            or s.migration_interval <= 0
            or generation <= 1
            or (generation - 1) % s.migration_interval
        ):
            return []
        key = f"migration:{generation}"
        with transaction(self.engine) as session:
            if reads.has_event(session, self.campaign_id, key):
                return []
            moves = []
            for island in range(s.islands):
                target = (island + 1) % s.islands
                for candidate_id in reads.best_member_ids(
                    session, self.campaign_id, island, s.migrants, absent_from=target
                ):
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
                EventKind.MIGRATION,
                f"before generation {generation}: {summary}",
                {"generation": generation, "moves": moves},
                key=key,
            )
            return moves


STRATEGY = StrategyKind(
    Selection.EVOLUTION,
    "parents from the archive by rank within islands, ring migration between them",
    IslandEvolution,
)
