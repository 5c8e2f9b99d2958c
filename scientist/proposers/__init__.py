"""Proposers: `mutation` (genetic programming, offline, the default) and `llm` (any litellm
model). Both return a Proposal built from parents that selection picked."""

from sandbox.tasks import TaskSpec
from sandbox.vocabulary import Origin
from scientist.proposers.base import Proposal, ProposalRequest, Proposer, ProposerError

__all__ = ["Proposal", "ProposalRequest", "Proposer", "ProposerError", "make_proposer"]


def make_proposer(config, task: TaskSpec) -> Proposer:
    """The proposer a campaign config asks for. The API key, if any, comes from the
    environment (litellm's provider variables, or llm.API_KEY_VARIABLE for --api-base servers)."""
    if config.proposer == Origin.MUTATION:
        from scientist.proposers.mutation import MutationProposer

        return MutationProposer(task)
    if config.proposer == Origin.LLM:
        from scientist.proposers.llm import LLMProposer, environment_api_key

        return LLMProposer(
            config.models,
            api_base=config.api_base,
            api_key=environment_api_key(),
            timeout=config.timeout,
            price_per_million=config.price_per_million,
        )
    raise ProposerError(f"unknown proposer {config.proposer!r}; choose mutation or llm")
