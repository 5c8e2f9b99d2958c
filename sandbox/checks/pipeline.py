"""Validity checks of a candidate for a task, cheapest first; the first failing stage stops.

static (source only) -> load (restricted execution) -> the piece's contract (abstract
tracing of an elementwise piece) -> the piece's conditions (sandbox/pieces).
"""

from collections.abc import Sequence

from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.checks.contract import check_elementwise_contract
from sandbox.checks.gradient_path import check_gradient_path
from sandbox.checks.report import CheckReport, CheckResult
from sandbox.checks.static import check_source
from sandbox.pieces import Contract
from sandbox.pieces.base import OTHER_SIZES, call_sizes, training_batches
from sandbox.tasks import TaskSpec
from sandbox.training.as_data import runs_as_data
from sandbox.vocabulary import Stage


def run_conditions(
    task: TaskSpec,
    function,
    filename: str = "candidate.py",
    *,
    budgets: Sequence[str] | None = None,
    proof_function=None,
) -> CheckReport:
    """The task's validity conditions on an already loaded and traced entry point, at every
    call length training uses at `budgets` (default: all budgets). An elementwise piece's
    code must first differentiate as its values do (checks/gradient_path.py): the
    conditions hold for values, and training follows the derivative."""
    piece = task.piece
    sizes = call_sizes(piece, budgets)
    if runs_as_data(function):
        # Elementwise trusted code on data: no call length can be singled out, so the lengths
        # training uses are enough (dtype still matters, and the float32 layer stays).
        sizes = tuple(s for s in sizes if s not in OTHER_SIZES) or sizes
    report = CheckReport()
    if piece.contract is Contract.ELEMENTWISE:
        # `proof_function`: an expression's bytecode's tree, not the interpreter that runs it
        path = check_gradient_path(proof_function or function, piece.arity, sizes, filename)
        if not report.add(path).passed:
            return report
    report.checks += piece.check(function, filename, sizes=sizes, proof_function=proof_function)
    return report


def contract_check(
    task: TaskSpec, function, filename: str, budgets: Sequence[str] | None = None
) -> CheckResult:
    """The elementwise contract, also on batches built as training builds its calls."""
    piece = task.piece
    batches = training_batches(piece, budgets) if piece.typical else []
    return check_elementwise_contract(function, tuple(task.inputs), filename, batches)


def static_check(source: str) -> CheckResult:
    violations = check_source(source)
    if violations:
        return CheckResult(
            Stage.STATIC, False, "; ".join(str(v) for v in violations), {"line": violations[0].line}
        )
    return CheckResult(Stage.STATIC, True, "imports, names and attributes are within the allowlist")


def check_candidate(task: TaskSpec, source: str, filename: str = "candidate.py") -> CheckReport:
    report = CheckReport()
    if not report.add(static_check(source)).passed:
        return report

    try:
        function = load_entry_point(source, task.entry_point, filename=filename)
    except CandidateLoadError as error:
        report.add(CheckResult(Stage.LOAD, False, str(error)))
        return report
    report.add(CheckResult(Stage.LOAD, True, f"defines {task.prototype}"))

    try:
        if task.piece.contract is Contract.ELEMENTWISE:
            if not report.add(contract_check(task, function, filename)).passed:
                return report
        report.checks += run_conditions(task, function, filename).checks
    except Exception as error:  # resource exhaustion propagates out of the checks
        report.add(
            CheckResult("resources", False, f"the candidate exhausted memory: {str(error)[:300]}")
        )
    return report
