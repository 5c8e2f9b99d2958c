"""Legible formulas for expression trees (sandbox/expressions.py): the simplest equivalent
tree sympy finds, and its LaTeX and MathML.

A tree becomes a sympy expression over real symbols (a task's inputs shown as r, A, ...;
the ratio declared positive, as the task declares it). Operators sympy knows map onto its
own (Max, Min, Abs, Piecewise, ...); softplus, sigmoid and clip stay opaque functions, so
every rewrite sympy makes is sound. A few bounded passes (the expensive ones only for
small expressions and only while the time budget lasts) propose simpler expressions; each
is translated back into a tree of our operator table and kept only when it is smaller and
evaluates (numpy, expressions.evaluate) to the same values as the original on a grid of
inputs that includes ratios far from 1 and advantages of both signs. A formula is only
ever shown for an expression that passed that check against the tree it describes.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.dom.minidom import Element

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter

from sandbox import expressions as ex


class Untranslatable(ValueError):
    """An expression or tree with no exact counterpart on the other side."""


# --- symbols --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    symbol: str  # the name formulas show
    positive: bool = False  # the task guarantees every value is > 0


# The tasks' inputs as formulas name them; any other input keeps its own name.
VARIABLES = {
    "ratio": Variable("r", positive=True),  # pi_new / pi_old
    "advantage": Variable("A"),
    "prediction": Variable("p"),
    "target": Variable("y"),
}
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"


def variable(name: str) -> Variable:
    return VARIABLES.get(name, Variable(name))


def symbol(name: str) -> str:
    """How formulas and notes name an input: r for the ratio, A for the advantage..."""
    return variable(name).symbol


def sympy_symbols(names: tuple[str, ...]) -> dict[str, sympy.Symbol]:
    """Real sympy symbols for input names; their own names where the short ones would clash."""
    if not all(n.isidentifier() for n in names):  # sympy's MathML does not escape names
        raise Untranslatable(f"input names must be identifiers: {names}")
    chosen = {n: variable(n) for n in names}
    if len({v.symbol for v in chosen.values()}) < len(chosen):
        chosen = {n: Variable(n, v.positive) for n, v in chosen.items()}
    return {
        n: sympy.Symbol(v.symbol, real=True, positive=v.positive or None) for n, v in chosen.items()
    }


# --- tree -> sympy ----------------------------------------------------------------------------

# Opaque to sympy (it may only treat them as functions of their arguments), hence sound.
SOFTPLUS = sympy.Function("softplus", positive=True)
SIGMOID = sympy.Function("sigmoid", positive=True)
CLIP = sympy.Function("clip", real=True)


def _where(strict: bool):
    def build(c, a, b):
        return sympy.Piecewise((a, c > 0 if strict else c >= 0), (b, True))

    return build


TO_SYMPY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "neg": operator.neg,
    "tanh": sympy.tanh,
    "relu": lambda x: sympy.Max(x, 0),
    "square": lambda x: x**2,
    "abs": sympy.Abs,
    "log": sympy.log,
    "exp": sympy.exp,
    "softplus": SOFTPLUS,
    "sigmoid": SIGMOID,
    "maximum": sympy.Max,
    "minimum": sympy.Min,
    "clip": CLIP,
    "where": _where(strict=False),
    "where_gt": _where(strict=True),
}


def _number(value: float) -> sympy.Rational:
    """The constant exactly as written in code (0.8 is 4/5), so sympy's arithmetic is exact."""
    if not math.isfinite(value):
        raise Untranslatable(f"the constant {value} is not finite")
    return sympy.Rational(repr(float(value)))


def to_sympy(node: ex.Node, symbols: dict[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(node, ex.Const):
        return _number(node.value)
    if isinstance(node, ex.Var):
        return symbols[node.name]
    return TO_SYMPY[node.name](*(to_sympy(c, symbols) for c in node.args))


# --- sympy -> tree ----------------------------------------------------------------------------

MAX_POWER = 16  # x**n up to this becomes squares and products; beyond, it is not legible anyway


def to_tree(expr: sympy.Expr, names: dict[sympy.Symbol, str]) -> ex.Node:
    """The tree of an expression built from our operators; Untranslatable otherwise."""
    if isinstance(expr, sympy.Symbol):
        if expr not in names:
            raise Untranslatable(f"unknown symbol {expr}")
        return ex.Var(names[expr])
    if not expr.free_symbols:
        return _constant(expr)
    if isinstance(expr, sympy.Add):
        return _sum(expr, names)
    if isinstance(expr, sympy.Mul):
        return _product(expr, names)
    if isinstance(expr, sympy.Pow):
        base, exponent = expr.args
        if not exponent.is_Integer or not 0 < abs(int(exponent)) <= MAX_POWER:
            raise Untranslatable(f"the power {exponent} is not a small integer")
        power = _power(to_tree(base, names), abs(int(exponent)))
        return power if exponent > 0 else ex.Op("div", (ex.Const(1.0), power))
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return _extremum(expr, names)
    if isinstance(expr, sympy.Piecewise):
        return _piecewise(expr, names)
    name = FROM_SYMPY.get(expr.func)
    if name is None:
        raise Untranslatable(f"no operator for {expr.func}")
    args = tuple(to_tree(a, names) for a in expr.args)
    if len(args) != ex.OPS[name].arity:
        raise Untranslatable(f"{name} takes {ex.OPS[name].arity} arguments, not {len(args)}")
    return ex.Op(name, args)


FROM_SYMPY = {
    sympy.tanh: "tanh",
    sympy.Abs: "abs",
    sympy.log: "log",
    sympy.exp: "exp",
    SOFTPLUS: "softplus",
    SIGMOID: "sigmoid",
    CLIP: "clip",
}


def _constant(expr: sympy.Expr) -> ex.Const:
    try:
        value = complex(expr.evalf())
    except TypeError:  # not a number at all (an interval, say)
        raise Untranslatable(f"the constant {expr} is not a number") from None
    if value.imag != 0 or not math.isfinite(value.real):
        raise Untranslatable(f"the constant {expr} is not a finite real number")
    return ex.Const(value.real)


def _sum(expr: sympy.Add, names) -> ex.Node:
    """Terms in printing order; a negative one is subtracted rather than added."""
    tree: ex.Node | None = None
    for term in expr.as_ordered_terms():
        negative = term.could_extract_minus_sign()
        part = to_tree(-term if negative else term, names)
        if tree is None:
            tree = ex.Op("neg", (part,)) if negative else part
        else:
            tree = ex.Op("sub" if negative else "add", (tree, part))
    return tree


def _product(expr: sympy.Mul, names) -> ex.Node:
    """coefficient * factors / denominators, -x as neg(x)."""
    coefficient, factors = expr.as_coeff_mul()
    if coefficient == -1:
        return ex.Op("neg", (to_tree(sympy.Mul(*factors), names),))
    numerator, denominator = [], []
    for factor in factors:
        if isinstance(factor, sympy.Pow) and factor.exp.is_Integer and factor.exp < 0:
            denominator.append(factor.base**-factor.exp)
        else:
            numerator.append(factor)
    p, q = sympy.fraction(coefficient)
    if q != 1 and _exact_decimal(coefficient):  # 0.5 * x reads better than x / 2
        p, q = coefficient, sympy.Integer(1)
    top = _chain([to_tree(f, names) for f in numerator], p)
    if not denominator and q == 1:
        return top
    return ex.Op("div", (top, _chain([to_tree(f, names) for f in denominator], q)))


def _exact_decimal(value: sympy.Rational, digits: int = 6) -> bool:
    return sympy.Rational(f"{float(value):.{digits}g}") == value


def _chain(factors: list[ex.Node], coefficient: sympy.Rational) -> ex.Node:
    """The product of the factors, the coefficient first unless it is 1."""
    if coefficient != 1 or not factors:
        factors = [_constant(coefficient), *factors]
    return _fold("mul", factors)


def _fold(name: str, trees: list[ex.Node]) -> ex.Node:
    """A binary operator over several operands, left to right: ((a op b) op c)..."""
    tree = trees[0]
    for other in trees[1:]:
        tree = ex.Op(name, (tree, other))
    return tree


def _power(base: ex.Node, n: int) -> ex.Node:
    """base**n from squares and products (square-and-multiply)."""
    if n == 1:
        return base
    if n % 2:
        return ex.Op("mul", (_power(base, n - 1), base))
    return ex.Op("square", (_power(base, n // 2),))


def _extremum(expr: sympy.Max | sympy.Min, names) -> ex.Node:
    """Nested maximum / minimum; max(0, x) as relu(x)."""
    args = list(expr.args)
    if isinstance(expr, sympy.Max) and sympy.S.Zero in args:
        args.remove(sympy.S.Zero)
        return ex.Op("relu", (to_tree(sympy.Max(*args), names),))
    name = "maximum" if isinstance(expr, sympy.Max) else "minimum"
    return _fold(name, [to_tree(a, names) for a in args])


def _piecewise(expr: sympy.Piecewise, names) -> ex.Node:
    """where(...) chains: each piece's condition a comparison, the last one `otherwise`."""
    *pieces, (last, otherwise) = expr.args
    if otherwise is not sympy.true:
        raise Untranslatable("a piecewise expression without an `otherwise` piece")
    tree = to_tree(last, names)
    for value, condition in reversed(pieces):
        name, difference = _condition(condition)
        tree = ex.Op(name, (to_tree(difference, names), to_tree(value, names), tree))
    return tree


def _condition(condition) -> tuple[str, sympy.Expr]:
    """`a >= b` as ("where", a - b), `a > b` as ("where_gt", a - b), and the mirrored forms."""
    if isinstance(condition, (sympy.GreaterThan, sympy.StrictGreaterThan)):
        difference = condition.lhs - condition.rhs
    elif isinstance(condition, (sympy.LessThan, sympy.StrictLessThan)):
        difference = condition.rhs - condition.lhs
    else:
        raise Untranslatable(f"the condition {condition} is not a comparison")
    strict = isinstance(condition, (sympy.StrictGreaterThan, sympy.StrictLessThan))
    return ("where_gt" if strict else "where"), difference


# --- the numerical check -----------------------------------------------------------------------

POSITIVE_POINTS = np.concatenate(
    [np.geomspace(1e-3, 1e3, 13), [0.37, 0.5, 0.8, 0.9, 0.99, 1.0, 1.01, 1.1, 1.2, 1.5, 2.0, 3.7]]
)
REAL_POINTS = np.array(
    [-100, -10, -3.3, -2, -1, -0.7, -0.5, -0.1, -1e-3, 0, 1e-3, 0.1, 0.5, 0.7, 1, 2, 3.3, 10, 100]
)
MAX_POINTS = 20_000  # beyond this many grid points (four or more inputs) a fixed sample
RTOL, ATOL = 1e-6, 1e-9  # float rounding of a rearranged expression, not a different function


@functools.cache
def check_points(inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every combination of typical and extreme values of each input (ratios > 0 only)."""
    axes = [POSITIVE_POINTS if variable(n).positive else REAL_POINTS for n in inputs]
    grid = [g.ravel() for g in np.meshgrid(*axes)] if axes else []
    if grid and grid[0].size > MAX_POINTS:
        keep = np.random.default_rng(0).choice(grid[0].size, MAX_POINTS, replace=False)
        grid = [g[keep] for g in grid]
    return dict(zip(inputs, grid))


def same_function(a: ex.Node, b: ex.Node, points: dict[str, np.ndarray]) -> bool:
    """Equal values (up to float rounding) wherever either is finite, on the check points."""
    va, vb = ex.evaluate(a, points), ex.evaluate(b, points)
    finite = np.isfinite(va)
    return bool(
        np.array_equal(finite, np.isfinite(vb))
        and np.allclose(va[finite], vb[finite], rtol=RTOL, atol=ATOL)
    )


# --- simplification ----------------------------------------------------------------------------

# No pass starts after this many seconds, so the proposer never stalls. A safety net: the
# passes' size limits keep a tree well inside it (median 10 ms, slowest 0.7 s measured), so
# the result does not depend on the machine's speed and proposals stay reproducible.
BUDGET_S = 2.0
OPAQUE_TANH = sympy.Function("opaque_tanh", real=True)


@dataclass(frozen=True)
class Pass:
    name: str
    apply: Callable[[sympy.Expr], sympy.Expr]
    max_ops: float  # skipped for expressions with more operations (sympy.count_ops) than this


def _simplify_without_trigsimp(expr: sympy.Expr) -> sympy.Expr:
    """sympy.simplify with tanh hidden: its hyperbolic rewrites take seconds on a few dozen
    operations and seldom make a drift more legible."""
    hidden = expr.replace(sympy.tanh, OPAQUE_TANH)
    return sympy.simplify(hidden).replace(OPAQUE_TANH, sympy.tanh)


# The more thorough passes come later and win ties: their forms are sympy's canonical ones.
PASSES = (
    Pass("as built", lambda e: e, math.inf),  # sympy's own evaluation: x - x, --x, x + x ...
    Pass("logcombine", sympy.logcombine, 120),
    Pass("cancel", sympy.cancel, 120),
    Pass("factor", sympy.factor, 80),
    Pass("simplify", _simplify_without_trigsimp, 30),
)


@dataclass(frozen=True)
class Formula:
    """A tree and, when sympy can express it exactly, the same function as a sympy
    expression (checked numerically) for display."""

    tree: ex.Node
    expression: sympy.Expr | None

    def latex(self) -> str | None:
        return (
            None if self.expression is None else _LatexPrinter().doprint(_decimal(self.expression))
        )

    def mathml(self) -> str | None:
        """Presentation MathML, a whole <math> element (browsers render it without scripts)."""
        if self.expression is None:
            return None
        body = _MathMLPrinter().doprint(_decimal(self.expression))
        return f'<math xmlns="{MATHML_NAMESPACE}" display="block">{body}</math>'


def simplest(tree: ex.Node, inputs: tuple[str, ...], budget_s: float = BUDGET_S) -> Formula:
    """The smallest tree (in nodes, then sympy's operation count) that sympy's passes find
    and that evaluates like `tree` on the check points; `tree` itself when none is smaller.
    Never larger, never a different function."""
    names = tuple(sorted(set(inputs) | ex.variables(tree)))
    points = check_points(names)
    try:
        symbols = sympy_symbols(names)
        built = to_sympy(tree, symbols)
    except (Untranslatable, ValueError, TypeError):  # sympy's Max refuses x / 0, for one
        return Formula(tree, None)
    back = {s: n for n, s in symbols.items()}
    ops = sympy.count_ops(built)
    formula, best = Formula(tree, None), (ex.size(tree), ops)
    deadline = time.monotonic() + budget_s
    for step in PASSES:
        if ops > step.max_ops or time.monotonic() > deadline:
            continue
        candidate = _attempt(step, built, back)
        if candidate is None:
            continue
        expression, found = candidate
        rank = (ex.size(found), sympy.count_ops(expression))
        # Later passes win ties; one that finds nothing better still gives a checked formula.
        better = rank < best or (rank == best and formula.expression is not None)
        if (better or formula.expression is None) and same_function(found, tree, points):
            formula = Formula(found if better else formula.tree, expression)
            best = min(best, rank)
    return formula


def _attempt(step: Pass, built: sympy.Expr, back) -> tuple[sympy.Expr, ex.Node] | None:
    """The pass's expression and its tree, None when it fails or leaves our operator table."""
    try:
        expression = step.apply(built)
        return expression, to_tree(expression, back)
    except Untranslatable:
        return None
    except Exception:  # noqa: BLE001  sympy's passes raise assorted errors on odd input
        return None


# --- display ----------------------------------------------------------------------------------


def _decimal(expr: sympy.Expr) -> sympy.Expr:
    """Fractions that are short decimals shown as decimals, like the code's constants."""
    return expr.xreplace(
        {
            q: sympy.Float(float(q))
            for q in expr.atoms(sympy.Rational)
            if not q.is_Integer and _exact_decimal(q)
        }
    )


class _LatexPrinter(LatexPrinter):
    """LaTeX that matplotlib's mathtext renders too: piecewise expressions inline, not as
    a cases environment."""

    def _print_Piecewise(self, expr):
        pieces = [
            rf"{self._print(value)}\ \mathrm{{if}}\ {self._print(condition)}"
            for value, condition in expr.args[:-1]
        ]
        pieces.append(rf"{self._print(expr.args[-1][0])}\ \mathrm{{otherwise}}")
        return r"\left\{" + r";\ ".join(pieces) + r"\right."


class _MathMLPrinter(MathMLPresentationPrinter):
    """Presentation MathML with piecewise expressions as a brace and a table of cases."""

    def _print_Piecewise(self, expr):
        table = self.dom.createElement("mtable")
        for value, condition in expr.args:
            row = self.dom.createElement("mtr")
            row.appendChild(self._cell(self._print(value)))
            row.appendChild(self._cell(self._case(condition)))
            table.appendChild(row)
        brace = self.dom.createElement("mo")
        brace.appendChild(self.dom.createTextNode("{"))
        mrow = self.dom.createElement("mrow")
        mrow.appendChild(brace)
        mrow.appendChild(table)
        return mrow

    def _cell(self, content: Element) -> Element:
        cell = self.dom.createElement("mtd")
        cell.appendChild(content)
        return cell

    def _case(self, condition) -> Element:
        words = self.dom.createElement("mtext")
        words.appendChild(
            self.dom.createTextNode("otherwise" if condition is sympy.true else "if ")
        )
        if condition is sympy.true:
            return words
        mrow = self.dom.createElement("mrow")
        mrow.appendChild(words)
        mrow.appendChild(self._print(condition))
        return mrow


@functools.lru_cache(maxsize=512)
def of_source(source: str, entry_point: str, inputs: tuple[str, ...]) -> Formula | None:
    """The simplest formula of a candidate module that is a single expression of the
    grammar (expressions.parse_module: parsed, never run); None for any other code."""
    tree = ex.parse_module(source, entry_point, inputs)
    return None if tree is None else simplest(tree, inputs)
