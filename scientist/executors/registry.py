"""Executors by name (`sandbox.vocabulary.ExecutorName`); Ray is imported on first use."""

from sandbox.vocabulary import ExecutorName
from scientist.executors.base import Executor, LocalExecutor


def _ray(ray_address: str | None) -> Executor:
    from scientist.executors.ray import RayExecutor

    return RayExecutor(ray_address)


EXECUTORS = {ExecutorName.LOCAL: lambda ray_address: LocalExecutor(), ExecutorName.RAY: _ray}


def get_executor(name: ExecutorName, *, ray_address: str | None = None) -> Executor:
    build = EXECUTORS.get(name)
    if build is None:
        raise ValueError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)}")
    return build(ray_address)
