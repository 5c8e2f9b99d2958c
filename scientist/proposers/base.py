"""What every proposer receives and returns. A proposer turns archived parents into the source
of a new candidate module; it never evaluates anything and never touches the archive."""

import random
from dataclasses import dataclass, field
from typing import Protocol

from sandbox.tasks import TaskSpec


@dataclass(frozen=True)
class ParentView:
    """An archived candidate as a proposer sees it."""

    id: int
    code: str
    status: str  # ok / rejected / invalid / failed / timeout / oom / output_limit / nonfinite
    fitness: float | None  # mean normalised IQM on the meta-train split (1.0 = PPO), None unless ok
    origin: str  # baseline / llm / mutation / es / distilled
    summary: str = ""  # one line per environment with its normalised score
    error: str = (
        ""  # for a failed candidate: the failing stage, its detail and any check counterexample
    )


@dataclass
class ProposalRequest:
    task: TaskSpec
    island: int
    generation: int
    parents: list[
        ParentView
    ]  # sampled by fitness rank within the island; parents[0] is the primary one
    inspirations: list[ParentView]  # the island's best, for context
    failures: list[
        ParentView
    ]  # recent failed candidates of the island, newest first (repair material)
    rng: random.Random


@dataclass
class CallRecord:
    """One request to a model, successful or not."""

    model: str
    messages: list[dict]  # the prompt as sent
    response: str | None  # the text returned, None if the call failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    attempts: int = 1
    error: str | None = None  # the last error when the call failed after its retries


@dataclass
class Proposal:
    code: str | None  # the full rendered candidate module; None when no usable code came back
    operator: (
        str  # rewrite / diff / crossover / repair (llm); mutate / crossover / random (mutation)
    )
    parent_ids: list[int] = field(
        default_factory=list
    )  # primary parent first, then the others used
    model: str | None = None
    calls: list[CallRecord] = field(default_factory=list)
    note: str = ""  # why there is no code, or what the operator did

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)


class ProposerError(RuntimeError):
    """The proposer cannot work at all (bad configuration, a task it cannot handle)."""


class ModelConfigError(ProposerError):
    """A model call failed in a way no retry and no other prompt can fix (no or a refused API
    key, an unknown model, a request the server refuses): a campaign stops at once, with a
    one-line message that says what to set."""


class Proposer(Protocol):
    name: str  # its registry name (proposers/registry.py), the origin of what it proposes

    def propose(self, request: ProposalRequest) -> Proposal: ...

    def record_outcome(self, model: str, fitness_improved: bool) -> None:
        """Feedback on a proposal by `model`: did the child beat its parent? (A proposer
        without models to weigh ignores it.)"""
