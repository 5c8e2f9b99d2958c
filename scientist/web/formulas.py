"""A candidate's formula for its page: presentation MathML, which browsers render natively
(no script, nothing fetched: the pages' CSP allows neither), and the LaTeX source to copy.
Only code that is a single expression of the grammar has one (sandbox/formulas.py: parsed
with `ast`, never run)."""

from dataclasses import dataclass

from markupsafe import Markup

from sandbox import formulas
from sandbox.tasks import TaskError, load_task


@dataclass(frozen=True)
class FormulaView:
    mathml: Markup  # sympy's printer output over our own tree: numbers, symbols, operators
    latex: str


def formula_view(task_name: str, code: str | None) -> FormulaView | None:
    """The simplest formula of the code, None for code outside the grammar or an unknown task."""
    if not isinstance(code, str) or not isinstance(task_name, str):  # tolerant of odd rows
        return None
    try:
        task = load_task(task_name)
    except TaskError:
        return None
    formula = formulas.of_source(code, task.entry_point, tuple(task.inputs))
    if formula is None or formula.expression is None:
        return None
    return FormulaView(Markup(formula.mathml()), formula.latex())
