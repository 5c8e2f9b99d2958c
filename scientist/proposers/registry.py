"""Proposers by name. An entry builds one from a campaign's config and its task; a new
proposer is its module and a line here (its name is the origin of what it proposes).
Modules are imported on first use: litellm alone takes seconds."""

from collections.abc import Callable

from sandbox.tasks import TaskSpec
from sandbox.vocabulary import Origin
from scientist.proposers.base import Proposer, ProposerError


def _mutation(config, task: TaskSpec) -> Proposer:
    from scientist.proposers.mutation import MutationProposer

    return MutationProposer(task)


def _llm(config, task: TaskSpec) -> Proposer:
    """The API key, if any, comes from the environment (litellm's provider variables, or
    llm.API_KEY_VARIABLE for --api-base servers), never from the config."""
    from scientist.proposers.llm import LLMProposer, environment_api_key

    return LLMProposer(
        config.models,
        api_base=config.api_base,
        api_key=environment_api_key(),
        timeout=config.timeout,
        price_per_million=config.price_per_million,
    )


PROPOSERS: dict[str, Callable[..., Proposer]] = {Origin.MUTATION: _mutation, Origin.LLM: _llm}


def check_proposer(name: str) -> str:
    if name not in PROPOSERS:
        raise ValueError(f"unknown proposer {name!r}; choose {', '.join(map(str, PROPOSERS))}")
    return name


def make_proposer(config, task: TaskSpec) -> Proposer:
    """The proposer a campaign config asks for."""
    build = PROPOSERS.get(config.proposer)
    if build is None:
        raise ProposerError(
            f"unknown proposer {config.proposer!r}; choose {', '.join(map(str, PROPOSERS))}"
        )
    return build(config, task)
