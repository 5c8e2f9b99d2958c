"""Where evaluations run. An executor is called like sandbox.cascade.evaluate_candidate and
returns its Evaluation; the campaign loop's evaluator threads call it and write the result
to the archive themselves, so no executor ever writes a result.

- `local` (default): the cascade in this process's threads, sandboxes on this machine.
- `ray`: each evaluation is a Ray task on a node with the resources it asks for (a GPU for
  the paper budget), running the same cascade and sandbox there.
"""

from scientist.executors.base import EXECUTORS, Executor, get_executor

__all__ = ["EXECUTORS", "Executor", "get_executor"]
