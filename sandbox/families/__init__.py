"""Environment families: the registry of every environment the trainer supports.

Adding a family is one module beside this one declaring a `Family` (sandbox/families/base.py)
and one line in FAMILIES below; the trainer, the evaluation, the scorer and batch sizing ask
the family of an environment id for what they need.
"""

from sandbox.families import gymnax_continuous, gymnax_discrete
from sandbox.families.base import EnvSpec, Family, UnknownEnvironmentError

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        gymnax_discrete.CLASSIC_CONTROL,
        gymnax_discrete.MINATAR,
        gymnax_continuous.GYMNAX_CONTINUOUS,
    )
}
_BY_ENV = {env_id: family for family in FAMILIES.values() for env_id in family.env_ids}
SUPPORTED_ENVS = tuple(_BY_ENV)
SIZES = {env_id: size for family in FAMILIES.values() for env_id, size in family.sizes.items()}


def family_of(env_id: str) -> Family:
    try:
        return _BY_ENV[env_id]
    except KeyError:
        raise UnknownEnvironmentError(
            f"unknown environment {env_id!r}; supported: {', '.join(SUPPORTED_ENVS)}"
        ) from None


def make_env(env_id: str) -> EnvSpec:
    return family_of(env_id).make(env_id)


__all__ = [
    "FAMILIES",
    "SIZES",
    "SUPPORTED_ENVS",
    "EnvSpec",
    "Family",
    "UnknownEnvironmentError",
    "family_of",
    "make_env",
]
