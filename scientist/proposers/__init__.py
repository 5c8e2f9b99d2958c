"""Proposers: `mutation` (genetic programming, offline, the default) and `llm` (any litellm
model). Both return a Proposal built from parents that selection picked."""

from sandbox.tasks import TaskSpec
from sandbox.vocabulary import Origin
from scientist.proposers.base import Proposal, ProposalRequest, Proposer, ProposerError

__all__ = ["Proposal", "ProposalRequest", "Proposer", "ProposerError", "make_proposer"]


def make_proposer(config, task: TaskSpec) -> Proposer:
    """The proposer a campaign config asks for. The API key, if any, comes from the
    environment (litellm's provider variables, or SCIENTIST_API_KEY for --api-base servers)."""
    if config.proposer == Origin.MUTATION:
        from scientist.proposers.mutation import MutationProposer

        return MutationProposer(task)
    if config.proposer == Origin.LLM:
        import os

        from scientist.proposers.llm import LLMProposer

        return LLMProposer(
            config.models,
            api_base=config.api_base,
            api_key=os.environ.get("SCIENTIST_API_KEY"),
            timeout=config.timeout,
            price_per_million=config.price_per_million,
        )
    raise ProposerError(f"unknown proposer {config.proposer!r}; choose mutation or llm")
