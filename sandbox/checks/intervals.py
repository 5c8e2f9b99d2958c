"""Interval arithmetic over a jaxpr: bounds on every value a traced function can compute when
each input lies in a box.

A candidate is traced at the shape and dtype training calls it with (sandbox/pieces), so
what is bounded is what trains, Python branches on shape or dtype included. Each lane of the
traced arrays carries its own box, so one pass bounds as many boxes as the traced shape has
entries. Only lane-wise primitives have rules: anything that mixes lanes (reductions,
sorting, gathers, positions) or that has no rule here raises NoRule, and the caller reports
the condition as unproved.

Semantics: inputs are real numbers in [lo, hi]; an endpoint of +-inf means unbounded. Every
arithmetic result is widened by a few float32 ulps (more for transcendental functions), so
the bounds also hold for the float32 computation training runs. A lane where some
intermediate value may be NaN or infinite (log of a non-positive number, division by an
interval holding 0, overflow of exp) is flagged in `hazard`, used or not: an unused NaN
branch of a `where` still poisons gradients.
"""

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

F32_ULP = 2.0**-23
TRANSCENDENTAL_ULPS = 8.0  # XLA's float32 exp, log, tanh, ... are within a few ulps
F32_MAX_EXP = 88.72  # exp overflows float32 beyond this
TINY = 2.0**-126  # below this float32 flushes to zero
# Off for `evaluate(..., rounding=False)`: the traced computation in float64 arithmetic (a
# point evaluation resolving steps float32 cannot), no float32 widening.
_ROUNDING = contextvars.ContextVar("float32_rounding", default=True)


class NoRule(Exception):
    """The jaxpr uses a primitive without an interval rule (or one that mixes lanes)."""

    def __init__(self, primitive: str):
        super().__init__(primitive)
        self.primitive = primitive


@dataclass(frozen=True)
class Interval:
    """Lane-wise bounds; booleans are intervals in {0, 1} (lo = 1: certainly true)."""

    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def point(value) -> "Interval":
        value = np.asarray(value, np.float64)
        return Interval(value, value)


class _Pass:
    """One evaluation: the hazard flags its rules raise, lane-wise."""

    def __init__(self):
        self.hazard = np.zeros((), bool)

    def flag(self, mask) -> None:
        self.hazard = np.logical_or(self.hazard, mask)


def _widen(lo, hi, ulps: float = 1.0) -> Interval:
    """Outward by `ulps` float32 ulps of each bound (exact zeros stay exact) and by what
    flushing to zero can change."""
    if not _ROUNDING.get():
        return Interval(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        slack_lo = np.abs(lo) * (ulps * F32_ULP)
        slack_hi = np.abs(hi) * (ulps * F32_ULP)
        lo = np.where(lo == 0, 0.0, lo - slack_lo - np.where(np.abs(lo) < 1e-30, TINY, 0.0))
        hi = np.where(hi == 0, 0.0, hi + slack_hi + np.where(np.abs(hi) < 1e-30, TINY, 0.0))
    return Interval(lo, hi)


def _sane(ctx: _Pass, x: Interval) -> Interval:
    """NaN bounds become unbounded, and a hazard."""
    bad = np.isnan(x.lo) | np.isnan(x.hi)
    if np.any(bad):
        ctx.flag(bad)
        return Interval(np.where(bad, -np.inf, x.lo), np.where(bad, np.inf, x.hi))
    return x


def _overflow(ctx: _Pass, x: Interval) -> Interval:
    ctx.flag(~np.isfinite(x.lo) | ~np.isfinite(x.hi))
    return x


# -- rules -------------------------------------------------------------------------------------


def _exactly(function, a: Interval, b: Interval) -> Interval | None:
    """Point operands: the float32 result itself (IEEE arithmetic is correctly rounded), so
    constants folded by the trace, like 1.5 - 1.0, stay points."""
    if np.any(a.lo != a.hi) or np.any(b.lo != b.hi) or not _ROUNDING.get():
        return None
    with np.errstate(all="ignore"):
        value = function(np.float32(a.lo), np.float32(b.lo)).astype(np.float64)
    return Interval(value, value) if np.all(np.isfinite(value)) else None


def _add(ctx, a, b):
    return _exactly(np.add, a, b) or _overflow(ctx, _widen(a.lo + b.lo, a.hi + b.hi))


def _sub(ctx, a, b):
    return _exactly(np.subtract, a, b) or _overflow(ctx, _widen(a.lo - b.hi, a.hi - b.lo))


def _products(a: Interval, b: Interval):
    with np.errstate(invalid="ignore", over="ignore"):
        products = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    # NaN only from 0 * inf: a zero factor of an unbounded (but finite) value is exactly 0.
    return [np.where(np.isnan(p), 0.0, p) for p in products]


def _mul(ctx, a, b):
    if (exact := _exactly(np.multiply, a, b)) is not None:
        return exact
    products = _products(a, b)
    return _overflow(ctx, _widen(np.minimum.reduce(products), np.maximum.reduce(products)))


def _reciprocal(ctx, b: Interval) -> Interval:
    spans_zero = (b.lo <= 0) & (b.hi >= 0)
    ctx.flag(spans_zero)
    with np.errstate(divide="ignore"):
        lo, hi = 1.0 / b.hi, 1.0 / b.lo
    return Interval(np.where(spans_zero, -np.inf, lo), np.where(spans_zero, np.inf, hi))


def _div(ctx, a, b):
    if (exact := _exactly(np.divide, a, b)) is not None:
        return exact
    return _mul(ctx, a, _reciprocal(ctx, b))


def _monotone(function, ulps: float = TRANSCENDENTAL_ULPS):
    def rule(ctx, x):
        with np.errstate(over="ignore", invalid="ignore"):
            return _overflow(ctx, _widen(function(x.lo), function(x.hi), ulps))

    return rule


def _exact_monotone(function):
    def rule(ctx, x):
        return Interval(function(x.lo), function(x.hi))

    return rule


def _exp(ctx, x):
    ctx.flag(x.hi > F32_MAX_EXP)
    with np.errstate(over="ignore"):
        return _widen(np.exp(x.lo), np.exp(x.hi), TRANSCENDENTAL_ULPS)


def _log_like(function, pole: float):
    def rule(ctx, x):
        ctx.flag(x.lo <= pole)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.where(x.lo <= pole, -np.inf, function(np.maximum(x.lo, pole)))
            hi = np.where(x.hi <= pole, -np.inf, function(np.maximum(x.hi, pole)))
        return _widen(lo, hi, TRANSCENDENTAL_ULPS)

    return rule


def _sqrt(ctx, x):
    ctx.flag(x.lo < 0)
    return _widen(np.sqrt(np.maximum(x.lo, 0.0)), np.sqrt(np.maximum(x.hi, 0.0)))


def _rsqrt(ctx, x):
    return _reciprocal(ctx, _sqrt(ctx, x))


def _neg(ctx, x):
    return Interval(-x.hi, -x.lo)


def _abs(ctx, x):
    lo = np.where(x.lo >= 0, x.lo, np.where(x.hi <= 0, -x.hi, 0.0))
    return Interval(lo, np.maximum(np.abs(x.lo), np.abs(x.hi)))


def _integer_pow(ctx, x, *, y: int, **_):
    if y == 0:
        return Interval.point(np.ones(np.broadcast(x.lo).shape))
    if y < 0:
        return _reciprocal(ctx, _integer_pow(ctx, x, y=-y))
    with np.errstate(over="ignore"):
        a, b = x.lo**y, x.hi**y
    if y % 2:
        return _overflow(ctx, _widen(a, b, y))
    lo = np.where((x.lo <= 0) & (x.hi >= 0), 0.0, np.minimum(a, b))
    return _overflow(ctx, _widen(lo, np.maximum(a, b), y))


def _pow(ctx, x, y):
    if np.all(y.lo == y.hi) and np.ndim(y.lo) == 0:
        exponent = float(y.lo)
        if exponent == int(exponent) and abs(exponent) < 64:
            return _integer_pow(ctx, x, y=int(exponent))
        if exponent > 0:  # x**e, increasing for x >= 0
            ctx.flag(x.lo < 0)
            lo, hi = np.maximum(x.lo, 0.0) ** exponent, np.maximum(x.hi, 0.0) ** exponent
            return _overflow(ctx, _widen(lo, hi, TRANSCENDENTAL_ULPS))
    if (y.lo > 0).all() and (x.lo >= 0).all() or (y.hi < 0).all() and (x.lo > 0).all():
        # x**y is monotone in x, and in y, where x >= 0 and y keeps its sign: the corners.
        with np.errstate(all="ignore"):
            corners = [x.lo**y.lo, x.lo**y.hi, x.hi**y.lo, x.hi**y.hi]
        lo, hi = np.minimum.reduce(corners), np.maximum.reduce(corners)
        return _overflow(ctx, _widen(lo, hi, TRANSCENDENTAL_ULPS))
    # x**y = exp(y log x), defined for x > 0
    return _exp(ctx, _mul(ctx, y, RULES["log"](ctx, x)))


def _max(ctx, a, b):
    return Interval(np.maximum(a.lo, b.lo), np.maximum(a.hi, b.hi))


def _min(ctx, a, b):
    return Interval(np.minimum(a.lo, b.lo), np.minimum(a.hi, b.hi))


def _clamp(ctx, low, x, high):
    return _min(ctx, _max(ctx, x, low), high)


def _boolean(certain, possible) -> Interval:
    return Interval(np.asarray(certain, np.float64), np.asarray(possible, np.float64))


def _gt(ctx, a, b):
    return _boolean(a.lo > b.hi, a.hi > b.lo)


def _ge(ctx, a, b):
    return _boolean(a.lo >= b.hi, a.hi >= b.lo)


def _lt(ctx, a, b):
    return _gt(ctx, b, a)


def _le(ctx, a, b):
    return _ge(ctx, b, a)


def _eq(ctx, a, b):
    equal = (a.lo == a.hi) & (b.lo == b.hi) & (a.lo == b.lo)
    return _boolean(equal, (a.lo <= b.hi) & (b.lo <= a.hi))


def _ne(ctx, a, b):
    return _not(ctx, _eq(ctx, a, b))


def _not(ctx, x):
    return Interval(1.0 - x.hi, 1.0 - x.lo)


def _and(ctx, a, b):
    return Interval(np.minimum(a.lo, b.lo), np.minimum(a.hi, b.hi))


def _or(ctx, a, b):
    return Interval(np.maximum(a.lo, b.lo), np.maximum(a.hi, b.hi))


def _is_finite(ctx, x):
    return _boolean(np.isfinite(x.lo) & np.isfinite(x.hi), True)


def _select_n(ctx, which, *cases):
    """cases[which]; where `which` is uncertain, the hull of the cases it may pick."""
    lo = np.full(np.broadcast_shapes(*(np.shape(c.lo) for c in (which, *cases))), np.inf)
    hi = -lo
    for k, case in enumerate(cases):
        possible = (which.lo <= k) & (which.hi >= k)
        lo = np.where(possible, np.minimum(lo, case.lo), lo)
        hi = np.where(possible, np.maximum(hi, case.hi), hi)
    return Interval(lo, hi)


def _convert(ctx, x, *, new_dtype, **_):
    kind = np.dtype(new_dtype).kind
    if kind == "b":
        nonzero = (x.lo > 0) | (x.hi < 0)
        return _boolean(nonzero, ~((x.lo == 0) & (x.hi == 0)))
    if kind in "iu":
        return Interval(np.trunc(x.lo), np.trunc(x.hi))
    return x


def _broadcast_in_dim(ctx, x, *, shape, broadcast_dimensions, **_):
    def apply(a):
        a = np.asarray(a)
        expanded = np.ones(len(shape), int)
        for source, target in enumerate(broadcast_dimensions):
            expanded[target] = a.shape[source]
        return np.broadcast_to(a.reshape(expanded), shape)

    return Interval(apply(x.lo), apply(x.hi))


def _reshape(ctx, x, *, new_sizes, **_):
    return Interval(np.reshape(x.lo, new_sizes), np.reshape(x.hi, new_sizes))


def _squeeze(ctx, x, *, dimensions, **_):
    return Interval(np.squeeze(x.lo, dimensions), np.squeeze(x.hi, dimensions))


def _identity(ctx, x, **_):
    return x


def _unit_interval(ctx, x):
    return Interval(np.full(np.shape(x.lo), -1.0), np.full(np.shape(x.lo), 1.0))


def _cosh(ctx, x):
    """Even and convex: smallest at the |x| nearest 0."""
    nearest = np.where((x.lo <= 0) & (x.hi >= 0), 0.0, np.minimum(np.abs(x.lo), np.abs(x.hi)))
    farthest = np.maximum(np.abs(x.lo), np.abs(x.hi))
    ctx.flag(farthest > F32_MAX_EXP)
    with np.errstate(over="ignore"):
        return _widen(np.cosh(nearest), np.cosh(farthest), TRANSCENDENTAL_ULPS)


def _domain(function, low: float, high: float, increasing: bool = True):
    """A function monotone on [low, high], NaN outside: outside is a hazard, and the bounds
    are taken on the part inside."""

    def rule(ctx, x):
        ctx.flag((x.lo < low) | (x.hi > high))
        lo, hi = np.clip(x.lo, low, high), np.clip(x.hi, low, high)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a, b = function(lo), function(hi)
        a, b = (a, b) if increasing else (b, a)
        return _widen(a, b, TRANSCENDENTAL_ULPS)

    return rule


def _decreasing(function, ulps: float = TRANSCENDENTAL_ULPS):
    def rule(ctx, x):
        with np.errstate(over="ignore", invalid="ignore"):
            return _overflow(ctx, _widen(function(x.hi), function(x.lo), ulps))

    return rule


def _erf_inv(x):
    from scipy.special import erfinv

    return erfinv(x)


def _erfc(x):
    from math import erfc

    return np.vectorize(erfc, otypes=[np.float64])(x)


def _logistic(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _erf(x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


RULES: dict[str, Callable] = {
    "add": _add,
    "add_any": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "neg": _neg,
    "abs": _abs,
    "sign": _exact_monotone(np.sign),
    "floor": _exact_monotone(np.floor),
    "ceil": _exact_monotone(np.ceil),
    "round": _exact_monotone(np.round),
    "max": _max,
    "min": _min,
    "clamp": _clamp,
    "square": lambda ctx, x: _integer_pow(ctx, x, y=2),
    "integer_pow": _integer_pow,
    "pow": _pow,
    "sqrt": _sqrt,
    "rsqrt": _rsqrt,
    "cbrt": _monotone(np.cbrt),
    "exp": _exp,
    "exp2": lambda ctx, x: _exp(ctx, _mul(ctx, x, Interval.point(np.log(2.0)))),
    "expm1": lambda ctx, x: _sub(ctx, _exp(ctx, x), Interval.point(1.0)),
    "log": _log_like(np.log, 0.0),
    "log1p": _log_like(np.log1p, -1.0),
    "tanh": _monotone(np.tanh),
    "logistic": _monotone(_logistic),
    "erf": _monotone(_erf),
    "atan": _monotone(np.arctan),
    "asinh": _monotone(np.arcsinh),
    "sinh": _monotone(np.sinh),
    "cosh": _cosh,
    "acosh": _domain(np.arccosh, 1.0, np.inf),
    "atanh": _domain(np.arctanh, -1.0, 1.0),
    "asin": _domain(np.arcsin, -1.0, 1.0),
    "acos": _domain(np.arccos, -1.0, 1.0, increasing=False),
    "erfc": _decreasing(_erfc),
    "erf_inv": _domain(_erf_inv, -1.0, 1.0),
    "sin": _unit_interval,
    "cos": _unit_interval,
    "gt": _gt,
    "ge": _ge,
    "lt": _lt,
    "le": _le,
    "eq": _eq,
    "ne": _ne,
    "not": _not,
    "and": _and,
    "or": _or,
    "is_finite": _is_finite,
    "select_n": _select_n,
    "convert_element_type": _convert,
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "copy": _identity,
    "optimization_barrier": _identity,
}
# No rule for stop_gradient, on purpose: certificates use derivatives, and a stopped
# gradient is not the derivative of the value.
_NESTED = {"jit": "jaxpr", "custom_jvp_call": "call_jaxpr"}
_BOOLEAN_OPS = {"not", "and", "or"}
_PARAMETRISED = {"integer_pow", "convert_element_type", "broadcast_in_dim", "reshape", "squeeze"}


def _jax_own(eqn) -> bool:
    """A custom_jvp_call of JAX's own function of arrays (relu, logaddexp...), not of candidate
    code, nor of JAX's wrappers of user functions (`lax.custom_root` takes its derivative from
    the tangent solve the caller writes)."""
    import os

    import jax

    info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    source = (getattr(info, "func_src_info", None) or "").rsplit(" at ", 1)[-1]
    root = os.path.dirname(jax.__file__) + os.sep
    wrappers = os.path.join(root, "_src", "lax", "control_flow") + os.sep
    return source.startswith(root) and not source.startswith(wrappers)


def _foldable(eqn) -> bool:
    """Computed once on constants rather than bounded: anything without effects that does
    not run a candidate's derivative rule or a loop (which could be endless)."""
    name = eqn.primitive.name
    return not eqn.effects and not name.startswith("custom") and name != "while"


def evaluate(
    closed_jaxpr, *inputs: Interval, rounding: bool = True
) -> tuple[list[Interval], np.ndarray]:
    """Bounds on the jaxpr's outputs for inputs in the given intervals, and the lanes where
    an intermediate value may be NaN or infinite. NoRule for a primitive without a rule.
    `rounding=False` bounds the computation in float64 arithmetic instead of float32's."""
    ctx = _Pass()
    token = _ROUNDING.set(rounding)
    try:
        outputs = _run(ctx, closed_jaxpr.jaxpr, closed_jaxpr.consts, list(inputs))
    finally:
        _ROUNDING.reset(token)
    return outputs, np.asarray(ctx.hazard)


def _run(ctx: _Pass, jaxpr, consts, inputs: list[Interval]) -> list[Interval]:
    from jax.extend.core import DropVar, Literal

    env = {}
    extrema = {}  # outputs of max and min: their operands, for `eq` against one of them

    def read(var) -> Interval:
        if isinstance(var, Literal):
            return Interval.point(var.val)
        if var in folded:
            value = folded[var]
            if np.size(value) and np.any(value != value.flat[0]):
                raise NoRule("an array constant")  # it could tell lanes apart
            return Interval.point(value)
        return env[var]

    def same(u, v) -> bool:
        if isinstance(u, Literal) or isinstance(v, Literal):
            return isinstance(u, Literal) and isinstance(v, Literal) and u.val == v.val
        return u is v

    def known_equality(eqn) -> Interval | None:
        """eq(x, max(x, y)) is x >= y and eq(x, min(x, y)) is x <= y: what autodiff of max,
        min and clip asks, and what plain intervals cannot see (x and max(x, y) overlap)."""
        for this, that in (eqn.invars, eqn.invars[::-1]):
            if isinstance(that, Literal) or that not in extrema:
                continue
            name, (p, q) = extrema[that]
            for own, other in ((p, q), (q, p)):
                if same(this, own):
                    compare = _ge if name == "max" else _le
                    return compare(ctx, read(own), read(other))
        return None

    folded = {}  # values that depend on no input: computed, not bounded

    def constant(var):
        return np.asarray(var.val) if isinstance(var, Literal) else folded.get(var)

    for var, value in zip(jaxpr.constvars, consts, strict=True):
        folded[var] = np.asarray(value)
    for var, value in zip(jaxpr.invars, inputs, strict=True):
        env[var] = value
    for eqn in jaxpr.eqns:
        if all(isinstance(v, DropVar) for v in eqn.outvars) and not eqn.effects:
            continue  # dead: e.g. the sum a gradient's trace keeps from its forward pass
        name = eqn.primitive.name
        values = [constant(v) for v in eqn.invars]
        if all(v is not None for v in values) and _foldable(eqn):
            outs = eqn.primitive.bind(*values, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            folded.update((v, np.asarray(x)) for v, x in zip(eqn.outvars, outs, strict=True))
            continue
        args = [read(v) for v in eqn.invars]
        if name == "custom_jvp_call" and not _jax_own(eqn):
            raise NoRule("a custom derivative rule")  # its jvp need not be the value's
        if name in _NESTED:
            inner = eqn.params[_NESTED[name]]
            outs = _run(ctx, inner.jaxpr, inner.consts, args)
        elif name == "eq" and (equality := known_equality(eqn)) is not None:
            outs = [equality]
        else:
            rule = RULES.get(name)
            if rule is None or (
                name in _BOOLEAN_OPS and eqn.outvars[0].aval.dtype != np.dtype(bool)
            ):
                raise NoRule(name)
            params = eqn.params if name in _PARAMETRISED else {}
            outs = [_sane(ctx, rule(ctx, *args, **params))]
        for var, value in zip(eqn.outvars, outs, strict=True):
            env[var] = value
        if name in ("max", "min"):
            extrema[eqn.outvars[0]] = (name, tuple(eqn.invars))
    return [read(v) for v in jaxpr.outvars]
