"""Process-wide XLA settings that must be in place before jax is first imported.

On small CPU hosts, XLA's concurrency-optimised scheduler can deadlock vmapped training runs
(every worker thread idle inside `block_until_ready`); disabling it costs no throughput.
"""

import os
import sys
import warnings

_CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def configure_xla() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" in flags:
        return  # the user chose explicitly
    if "jax" in sys.modules:
        warnings.warn(
            "jax was imported before sandbox; XLA_FLAGS could not be set and vmapped CPU "
            "training may hang. Import sandbox first or export XLA_FLAGS=" + _CPU_SCHEDULER_FLAG,
            stacklevel=3,
        )
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_CPU_SCHEDULER_FLAG}".strip()


configure_xla()
