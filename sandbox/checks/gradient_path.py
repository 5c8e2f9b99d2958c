"""The primitives allowed on the path from a piece's inputs to its output, in its traced program.

Training follows the derivative JAX computes, primitive by primitive, from each primitive's
derivative rule. For most primitives that rule is the derivative of the primitive's values;
for some it is not: `round`, `floor`, bitcasts and integer conversions report 0 for a function
that tracks its input to the last bit (`r - round(r * 2**63) / 2**63` is exactly 0 with slope
1), `clamp` with traced bounds and implicit solves (`custom_root`, `custom_linear_solve`) take
their derivative from code the candidate writes. A candidate built from them can satisfy every
condition in its values while training follows the gradient of something else.

So the program is traced the way training traces it (under `jax.jvp`, float32 arrays of the
call's length) and every equation that depends on an input must use a primitive of `HONEST`:
its derivative rule is the derivative of its values (where they are differentiable) and it has
an interval rule (checks/intervals.py), so the certificate can bound it too. Anything else is
refused with the primitive's name and the candidate's line. Names are not the test: the same
primitive is reachable through many spellings (`jnp.rint`, `x // 1`, `astype(int)`,
`lax.clamp`), and every one of them ends as a primitive here.

A program whose path is honest can still compute an exact copy of its input with zero
derivative out of honest pieces (a bisection of comparisons and selects); the numeric
consistency condition of its piece (autodiff against difference quotients) sees that one.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.checks.report import CheckResult

NAME = "gradient_path"

# Derivative rule = derivative of the values; each has an interval rule (intervals.RULES) or is
# a container the walk enters. Comparisons and boolean logic only choose between branches.
HONEST = frozenset(
    {
        # arithmetic
        "add", "add_any", "sub", "mul", "div", "neg", "abs", "sign", "max", "min",
        "square", "integer_pow", "pow", "sqrt", "rsqrt", "cbrt",
        # transcendental
        "exp", "exp2", "expm1", "log", "log1p", "tanh", "logistic", "erf", "erfc", "erf_inv",
        "atan", "asinh", "acosh", "atanh", "sinh", "cosh", "sin", "cos", "asin", "acos",
        # comparisons, logic, selection
        "gt", "ge", "lt", "le", "eq", "ne", "not", "and", "or", "is_finite", "select_n",
        # layout
        "broadcast_in_dim", "reshape", "squeeze", "copy", "convert_element_type",
        "dot_general", "transpose", "reduce_sum", "reduce_max", "reduce_min", "concatenate",
        "slice", "stack",
    }
)  # fmt: skip
# Containers whose inner programs are walked with the operands' taint: param holding the jaxpr.
NESTED = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "remat": "jaxpr",
    "checkpoint": "jaxpr",
    "remat2": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
}
# Why the usual suspects are refused, in the message a proposer reads.
DIFFERENTIATED = 1  # the taint bit of the first input, the one training differentiates
REASONS = {
    "round": "its derivative is 0 while its values follow the input to the last bit",
    "floor": "its derivative is 0 while its values follow the input to the last bit",
    "ceil": "its derivative is 0 while its values follow the input to the last bit",
    "rem": "its derivative ignores the jumps of its values",
    "nextafter": "it has no derivative rule that follows its values",
    "bitcast_convert_type": "a bit-level round trip copies a value with derivative 0",
    "reduce_precision": "it rounds its values and passes the derivative through unchanged",
    "clamp": "clamp with bounds computed from the input takes its derivative from the bounds",
    "custom_root": "its derivative comes from a tangent solve the candidate writes",
    "custom_linear_solve": "its derivative comes from a transpose solve the candidate writes",
    "custom_jvp_call": "its derivative rule is code, not the derivative of its values",
    "custom_vjp_call": "its derivative rule is code, not the derivative of its values",
    "stop_gradient": "a stopped gradient is not the derivative of the value it passes on",
    "while": "a loop on the input has no reverse-mode derivative training can follow",
}


@dataclass(frozen=True)
class Refusal:
    primitive: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return (
            f"{where}`{self.primitive}` lies on the path from the inputs to the output, and "
            f"{self.reason}; training follows the derivative, so only primitives whose "
            "derivative is the derivative of their values may lie there"
        )


@dataclass(frozen=True)
class _Where:
    """Where in the candidate an equation comes from: its file, and inside a library
    function's own program, the candidate's line that called it."""

    filename: str
    outer: int | None = None

    def line(self, eqn) -> int | None:
        traceback = getattr(eqn.source_info, "traceback", None)
        for frame in getattr(traceback, "frames", None) or []:
            if frame.file_name == self.filename:
                return frame.line_num
        return self.outer

    def inside(self, eqn) -> "_Where":
        return _Where(self.filename, self.line(eqn))


def _refusal(eqn, taints: list[int], where: _Where) -> Refusal | None:
    name = eqn.primitive.name
    if name == "clamp":  # honest with bounds free of the differentiated input (jnp.clip)
        low, _, high = taints
        differentiated = (low | high) & DIFFERENTIATED
        return Refusal(name, where.line(eqn), REASONS[name]) if differentiated else None
    if name == "convert_element_type":
        import jax.numpy as jnp

        new, old = eqn.params["new_dtype"], eqn.invars[0].aval.dtype
        floats = jnp.issubdtype(old, jnp.floating), jnp.issubdtype(new, jnp.floating)
        if floats[0] and jnp.issubdtype(new, jnp.integer):
            reason = "converting to integers rounds the values and has derivative 0"
            return Refusal(f"{name} to {new}", where.line(eqn), reason)
        if all(floats) and new.itemsize < old.itemsize:  # bfloat16's numpy kind is not "f"
            reason = "a narrower float rounds the values while the derivative passes through"
            return Refusal(f"{name} to {new}", where.line(eqn), reason)
        return None
    if name in HONEST:
        return None
    if name == "custom_jvp_call":  # name the function: `_custom_root` is lax.custom_root
        info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
        function = getattr(info, "func_name", None) or "?"
        reason = REASONS["custom_root" if "custom_root" in function else name]
        return Refusal(f"{name} of {function}", where.line(eqn), reason)
    reason = REASONS.get(name, "it is not among the primitives known to differentiate honestly")
    return Refusal(name, where.line(eqn), reason)


def _inner(eqn):
    """The program a container equation runs, or None: JAX's own custom_jvp functions (relu,
    logaddexp) are entered, a candidate's are not (intervals.py `_jax_own`)."""
    from sandbox.checks.intervals import _jax_own

    name = eqn.primitive.name
    if name == "custom_jvp_call" and not _jax_own(eqn):
        return None
    param = NESTED.get(name)
    if param is None:
        return None
    inner = eqn.params[param]
    return getattr(inner, "jaxpr", inner)


def _union(flags: list[int]) -> int:
    out = 0
    for flag in flags:
        out |= flag
    return out


def _walk(jaxpr, tainted_in: list[int], where: _Where) -> tuple[list[int], Refusal | None]:
    """Taint forward from the inputs (a bit per input: which inputs a value depends on); the
    first equation on the path whose primitive is not honest. Returns the outputs' taint."""
    from jax.extend.core import Literal

    taint = dict(zip(jaxpr.invars, tainted_in, strict=True))

    def read(var) -> int:
        return 0 if isinstance(var, Literal) else taint.get(var, 0)

    for eqn in jaxpr.eqns:
        flags = [read(v) for v in eqn.invars]
        outs = [_union(flags)] * len(eqn.outvars)
        if any(flags):
            name = eqn.primitive.name
            if (inner := _inner(eqn)) is not None:
                outs, refusal = _walk(inner, flags, where.inside(eqn))
            elif name == "cond":
                outs, refusal = _walk_cond(eqn, flags, where.inside(eqn))
            elif name == "scan":
                outs, refusal = _walk_scan(eqn, flags, where.inside(eqn))
            else:
                refusal = _refusal(eqn, flags, where)
            if refusal:
                return [], refusal
        taint.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars], None


def _walk_cond(eqn, flags: list[int], where: _Where) -> tuple[list[int], Refusal | None]:
    """Every branch sees the operands; the index taints every output it picks between."""
    index, *operands = flags
    outs = [index] * len(eqn.outvars)
    for branch in eqn.params["branches"]:
        inner, refusal = _walk(branch.jaxpr, operands, where)
        if refusal:
            return [], refusal
        outs = [a | b for a, b in zip(outs, inner, strict=True)]
    return outs, None


def _walk_scan(eqn, flags: list[int], where: _Where) -> tuple[list[int], Refusal | None]:
    """The body, walked again while taint spreads through the carry."""
    consts, carries = eqn.params["num_consts"], eqn.params["num_carry"]
    body, flags = eqn.params["jaxpr"].jaxpr, list(flags)
    while True:
        outs, refusal = _walk(body, flags, where)
        if refusal:
            return [], refusal
        carry = flags[consts : consts + carries]
        spread = [a | b for a, b in zip(carry, outs[:carries], strict=True)]
        if spread == carry:
            return outs, None
        flags[consts : consts + carries] = spread


def trace_for_training(function, arity: int, size: int):
    """The program as training traces it: under jax.jvp in the first input (the one training
    differentiates), on float32 arrays of one call's length."""
    import jax
    import jax.numpy as jnp

    spec = jax.ShapeDtypeStruct((size,), jnp.float32)

    def differentiated(first, *rest):
        return jax.jvp(lambda x: function(x, *rest), (first,), (jnp.ones_like(first),))

    return jax.make_jaxpr(differentiated)(*[spec] * arity)


def check_gradient_path(
    function, arity: int, sizes: Iterable[int], filename: str = "candidate.py"
) -> CheckResult:
    """Refuse a program with a primitive off `HONEST` on the path from any input to the output,
    at every call length in `sizes` (a program may differ by length)."""
    from sandbox.checks.contract import describe_failure

    sizes = sorted(set(sizes))
    for size in sizes:
        try:
            closed = trace_for_training(function, arity, size)
        except Exception as error:  # the candidate crashed while traced for its derivative
            return CheckResult(NAME, False, describe_failure(error, filename))
        _, refusal = _walk(closed.jaxpr, [1 << k for k in range(arity)], _Where(filename))
        if refusal:
            return CheckResult(
                NAME,
                False,
                str(refusal),
                {"primitive": refusal.primitive, "line": refusal.line, "size": size},
            )
    return CheckResult(
        NAME,
        True,
        f"every primitive from the inputs to the output differentiates as its values do "
        f"(traced under jax.jvp at {len(sizes)} call lengths)",
    )
