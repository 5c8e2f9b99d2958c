"""Validity checks of a candidate for a task, cheapest first; the first failing stage stops.

static (source only) -> load (restricted execution) -> shape (abstract tracing) -> the task's
conditions (drift conditions, value-loss minimum, optimizer behaviour).
"""

import importlib

from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.checks.contract import check_elementwise_contract
from sandbox.checks.report import CheckReport, CheckResult
from sandbox.checks.static import check_source
from sandbox.tasks import TaskSpec

_CONDITIONS = {
    "drift": ("sandbox.checks.drift", "check_drift"),
    "value_loss": ("sandbox.checks.value_loss", "check_value_loss"),
    "make_optimizer": ("sandbox.checks.optimizer", "check_optimizer"),
}
_ELEMENTWISE_SLOTS = ("drift", "value_loss")


def check_candidate(task: TaskSpec, source: str, filename: str = "candidate.py") -> CheckReport:
    report = CheckReport()
    violations = check_source(source)
    if violations:
        detail = "; ".join(str(v) for v in violations)
        report.add(CheckResult("static", False, detail, {"line": violations[0].line}))
        return report
    report.add(CheckResult("static", True, "imports, names and attributes are within the allowlist"))

    try:
        function = load_entry_point(source, task.entry_point, filename=filename)
    except CandidateLoadError as error:
        report.add(CheckResult("load", False, str(error)))
        return report
    report.add(CheckResult("load", True, f"defines {task.signature}"))

    if task.slot in _ELEMENTWISE_SLOTS:
        arg_names = tuple(task.inputs)
        if not report.add(check_elementwise_contract(function, arg_names, filename)).passed:
            return report
    module, name = _CONDITIONS[task.slot]
    for result in getattr(importlib.import_module(module), name)(function, filename):
        report.add(result)
    return report
