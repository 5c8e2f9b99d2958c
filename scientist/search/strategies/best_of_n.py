"""Best-of-N, the control arm: every proposal starts from the task's baselines that seed the
search, and sees nothing the campaign has learnt (no archive parents, no failures, no
migration). The same proposer, no feedback from results: what search adds is the
difference between a campaign and this one (`scientist compare`)."""

import random

from sandbox.vocabulary import Selection
from scientist.search.strategy import ArchivedStrategy, Ask, Slot, StrategyKind


class BestOfN(ArchivedStrategy):
    def ask(self, slot: Slot, rng: random.Random) -> Ask:
        baselines = self._baselines(slot.island)
        parents = rng.sample(baselines, min(self.settings.parents, len(baselines)))
        inspirations = [i for i in baselines if i not in parents][: self.settings.inspirations]
        return Ask(parents, inspirations, [])


STRATEGY = StrategyKind(
    Selection.NONE, "the control arm: parents are the task's baselines, always", BestOfN
)
