"""The shared contract of elementwise candidates: traceable by JAX, shape- and dtype-
preserving, and truly elementwise (no reductions or mixing across the batch)."""

import traceback

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.checks.report import CheckResult

_CONTROL_FLOW_ERRORS = (
    jax.errors.TracerBoolConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def candidate_line(error: BaseException, filename: str) -> str:
    """' (line N)' for the deepest frame of the candidate's own file in the traceback."""
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    return f" (line {lines[-1]})" if lines else ""


def is_control_flow_error(error: BaseException) -> bool:
    # bool() of a non-scalar tracer raises a plain ValueError rather than a JAX error.
    return isinstance(error, _CONTROL_FLOW_ERRORS) or (
        isinstance(error, ValueError) and "truth value of an array" in str(error)
    )


def is_resource_exhaustion(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def describe_failure(error: BaseException, filename: str) -> str:
    """Plain words for a candidate's crash. Resource exhaustion is not a verdict on the
    candidate's validity: it propagates, so the cascade can report it as such."""
    if is_resource_exhaustion(error):
        raise error
    where = candidate_line(error, filename)
    if is_control_flow_error(error):
        return (
            f"uses Python control flow (if/while/bool/int) on traced array values{where}; "
            "write branches with jnp.where or jax.lax.cond"
        )
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"raised {type(error).__name__}{where}: {message[:300]}"


def check_elementwise_contract(
    fn, arg_names: tuple[str, ...], filename: str, batches: list[tuple] = ()
) -> CheckResult:
    """Trace `fn` abstractly on float32 inputs of two shapes; its output must have the
    inputs' shape and a floating dtype, and equal the per-element (vmapped scalar) result:
    on random points, and on each of `batches` (built as training builds its calls, see
    pieces/base.py `training_batches`: a function that reads batch statistics, such as the
    standardised advantages' std, or positions, differs there)."""
    name = "shape"
    for shape in ((7,), (3, 5)):
        inputs = [jax.ShapeDtypeStruct(shape, jnp.float32)] * len(arg_names)
        try:
            out = jax.eval_shape(fn, *inputs)
        except Exception as error:
            return CheckResult(
                name, False, describe_failure(error, filename), {"input_shape": list(shape)}
            )
        if not isinstance(out, jax.ShapeDtypeStruct):
            return CheckResult(
                name,
                False,
                f"must return one array, returned {type(out).__name__}",
                {"input_shape": list(shape)},
            )
        if out.shape != shape:
            return CheckResult(
                name,
                False,
                f"must be elementwise: inputs of shape {shape} gave an output of shape {out.shape}",
                {"input_shape": list(shape), "output_shape": list(out.shape)},
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            return CheckResult(
                name, False, f"must return floats, returned {out.dtype}", {"dtype": str(out.dtype)}
            )

    # Elementwise means each output depends on its own inputs only: compare each batched call
    # with the same points evaluated one at a time.
    random_points = tuple(jnp.asarray(v, jnp.float32) for v in _probe_points(len(arg_names)))
    together = jax.jit(fn)
    alone = jax.jit(jax.vmap(lambda *xs: fn(*[x[None] for x in xs])[0]))
    for points in [random_points, *batches]:
        try:
            batched = np.asarray(together(*points))
            single = np.asarray(alone(*points))
        except Exception as error:
            return CheckResult(name, False, describe_failure(error, filename))
        differs = ~np.isclose(batched, single, rtol=1e-4, atol=1e-6, equal_nan=True)
        if differs.any():
            i = int(np.argmax(differs))
            example = {arg: float(p[i]) for arg, p in zip(arg_names, points)}
            return CheckResult(
                name,
                False,
                f"must be elementwise: the output at {_fmt(example)} is {batched[i]:.6g} in a "
                f"batch of {points[0].shape[0]} (built as training builds its calls) but "
                f"{single[i]:.6g} on its own (it mixes values across the batch, e.g. a mean "
                "or a standard deviation, or depends on positions)",
                {
                    **example,
                    "batch": int(points[0].shape[0]),
                    "batched": float(batched[i]),
                    "alone": float(single[i]),
                },
            )
    sizes = ", ".join(str(p[0].shape[0]) for p in batches)
    return CheckResult(
        name,
        True,
        f"elementwise over ({', '.join(arg_names)}); shape and float dtype preserved"
        + (f"; also in training-like batches of {sizes}" if batches else ""),
    )


def _probe_points(n_args: int, n: int = 64):
    rng = np.random.default_rng(0)
    first = np.exp(rng.uniform(-2, 2, n))  # positive, like a probability ratio
    return [first] + [rng.normal(0, 2, n) for _ in range(n_args - 1)]


def _fmt(values: dict) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in values.items())
