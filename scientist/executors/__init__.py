"""Where evaluations run. An executor is called like harness.cascade.evaluate_batch and
returns an Evaluation per candidate of the batch; scientist.search.recorder.Recorder (used by
campaigns, ES and distillation) writes the result to the archive, so no executor ever writes one.

- `local` (default): the cascade in this process's threads, sandboxes on this machine.
- `ray`: each batch is a Ray task on a node with the resources it asks for (a GPU for
  the paper budget), running the same cascade and sandbox there.

The interface is `base.Executor`; `registry.get_executor` builds one by name.
"""
