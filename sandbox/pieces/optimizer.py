"""Optimizers: `make_optimizer(learning_rate, max_grad_norm)` returns the optax
transformation that updates the actor-critic; `learning_rate` may be an annealing schedule.

Valid: a fixed-structure state, finite updates shaped like the parameters, rest on zero
gradients (up to weight decay), and descent on a quadratic. Transformations are not
expression trees, so there is no pre-screen: the LLM proposer writes these.
"""

import numpy as np

from sandbox.checks.report import CheckResult
from sandbox.pieces.base import Contract, Piece
from sandbox.training.components import PlugPoint

LEARNING_RATE = 1e-2
MAX_GRAD_NORM = 0.5


def _params():
    """A small pytree shaped like an actor-critic layer stack."""
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "actor": {"kernel": jax.random.normal(k1, (4, 8)) * 0.5, "bias": jnp.zeros(8)},
        "critic": {"kernel": jax.random.normal(k2, (8, 1)) * 0.5, "bias": jnp.zeros(1)},
    }


def _schedule(count):
    return LEARNING_RATE * (1.0 - count / 1000.0)  # the trainer passes an annealing schedule


def _describe_tree(tree) -> str:
    import jax
    import jax.numpy as jnp

    return str(jax.tree.map(lambda x: f"{jnp.shape(x)}:{jnp.result_type(x)}", tree))[:300]


def check_optimizer(
    make_optimizer, filename: str = "candidate.py", *, sizes=None, proof_function=None
) -> list[CheckResult]:
    """The optimizer conditions on a small parameter tree (`sizes` and `proof_function`, for
    elementwise kinds, do not apply)."""
    import optax

    from sandbox.checks.contract import describe_failure

    names = ("structure", "finite", "zero_gradient", "descent")
    try:
        tx = make_optimizer(_schedule, MAX_GRAD_NORM)
        if not isinstance(tx, optax.GradientTransformation) and not (
            hasattr(tx, "init") and hasattr(tx, "update")
        ):
            return [
                CheckResult(
                    "structure",
                    False,
                    "make_optimizer must return an optax.GradientTransformation, "
                    f"got {type(tx).__name__}",
                )
            ]
        return [
            _check_structure(tx, filename),
            *_check_random_gradients(tx),
            _check_descent(make_optimizer),
        ]
    except Exception as error:
        return [CheckResult(n, False, describe_failure(error, filename)) for n in names]


def _check_structure(tx, filename):
    import jax
    import jax.numpy as jnp

    params = _params()
    state = jax.jit(tx.init)(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    if jax.tree.structure(updates) != jax.tree.structure(params):
        return CheckResult(
            "structure",
            False,
            "updates must have the parameters' tree structure",
            {"params": _describe_tree(params), "updates": _describe_tree(updates)},
        )
    for p, u in zip(jax.tree.leaves(params), jax.tree.leaves(updates)):
        if jnp.shape(p) != jnp.shape(u) or jnp.result_type(p) != jnp.result_type(u):
            return CheckResult(
                "structure",
                False,
                "each update must match its parameter's shape and dtype",
                {"params": _describe_tree(params), "updates": _describe_tree(updates)},
            )
    # The trainer carries the state through lax.scan, which needs a fixed structure.
    same = jax.tree.structure(state) == jax.tree.structure(new_state) and all(
        jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state))
    )
    if not same:
        return CheckResult(
            "structure",
            False,
            "the optimizer state must keep its structure, shapes and dtypes across updates",
            {"state": _describe_tree(state), "next_state": _describe_tree(new_state)},
        )
    return CheckResult(
        "structure", True, "updates match the parameters; the state keeps a fixed structure"
    )


def _run(tx, grads_fn, steps, *args):
    """`steps` updates from the fresh parameters; grads_fn(params, i, *args) gives gradients."""
    import jax
    import jax.numpy as jnp
    import optax

    def run(params, *args):
        def step(carry, i):
            params, state = carry
            updates, state = tx.update(grads_fn(params, i, *args), state, params)
            return (optax.apply_updates(params, updates), state), updates

        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))

    params = _params()
    (final, state), updates = jax.jit(run)(params, *args)
    return params, final, state, updates


def _random_gradients(params, i, scale):
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.fold_in(jax.random.key(1), i), len(jax.tree.leaves(params)))
    leaves = [
        jax.random.normal(k, jnp.shape(x)) * scale for k, x in zip(keys, jax.tree.leaves(params))
    ]
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


def _all_finite(tree) -> bool:
    import jax
    import jax.numpy as jnp

    return all(
        bool(jnp.all(jnp.isfinite(x)))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    )


SCALES = (0.0, 1e-6, 1.0, 1e3)  # gradient scales; 0 is the zero-gradient case


def _check_random_gradients(tx) -> list[CheckResult]:
    """Finite behaviour under random gradients and rest under zero gradients, from one
    compiled call vmapped over the gradient scale."""
    import jax
    import jax.numpy as jnp

    run = jax.vmap(lambda scale: _run(tx, _random_gradients, 20, scale), in_axes=0)
    params, finals, states, updates = run(jnp.array(SCALES))
    results = []
    for what, tree in (("update", updates), ("state", states), ("parameter", finals)):
        if not _all_finite(tree):
            results.append(
                CheckResult(
                    "finite",
                    False,
                    f"a non-finite {what} appeared within 20 steps of random "
                    f"gradients at scales {SCALES}",
                    {"gradient_scales": list(SCALES)},
                )
            )
            break
    else:
        results.append(
            CheckResult(
                "finite", True, f"finite updates and state for 20 steps at gradient scales {SCALES}"
            )
        )

    start = jax.tree.map(lambda x: x[0], params)
    at_rest = jax.tree.map(lambda x: x[0], finals)
    moved = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(at_rest), jax.tree.leaves(start))
    )
    largest = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(start))
    allowed = 20 * LEARNING_RATE * max(1.0, largest)  # room for weight decay, not for drifting off
    if not np.isfinite(moved) or moved > allowed:
        results.append(
            CheckResult(
                "zero_gradient",
                False,
                f"with zero gradients the parameters moved by {moved:.4g} in 20 steps "
                f"(allowed {allowed:.4g} at lr {LEARNING_RATE:g})",
                {"moved": moved, "allowed": allowed, "learning_rate": LEARNING_RATE},
            )
        )
    else:
        results.append(
            CheckResult(
                "zero_gradient",
                True,
                f"zero gradients moved the parameters by {moved:.3g} in 20 steps",
            )
        )
    return results


def _check_descent(make_optimizer):
    import jax
    import jax.numpy as jnp

    tx = make_optimizer(LEARNING_RATE, MAX_GRAD_NORM)
    target = jax.tree.map(lambda x: x + 1.0, _params())

    def loss(params):
        return sum(
            jnp.sum(jnp.square(p - t))
            for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(target))
        )

    params, final, _, _ = _run(tx, lambda p, i: jax.grad(loss)(p), 50)
    before, after = float(loss(params)), float(loss(final))
    if not after < before:
        return CheckResult(
            "descent",
            False,
            "50 steps on the quadratic |params - target|^2 took the loss from "
            f"{before:.4g} to {after:.4g}; updates are added to the parameters, so they must "
            "point down the gradient",
            {"loss_before": before, "loss_after": after},
        )
    return CheckResult(
        "descent",
        True,
        f"50 steps on a quadratic reduced the loss from {before:.4g} to {after:.4g}",
    )


def behaviour(make_optimizer) -> np.ndarray:
    """Three updates on fixed gradients of a small parameter tree."""
    import jax
    import jax.numpy as jnp

    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}
    tx = make_optimizer(lambda count: 1e-2 * (1.0 - count / 1000.0), 0.5)
    state = tx.init(params)
    outputs = []
    for step in range(3):
        grads = jax.tree.map(lambda p: jnp.cos(p * (step + 1.0)) * 0.3, params)
        updates, state = tx.update(grads, state, params)
        outputs += [np.asarray(u, dtype=np.float64).ravel() for u in jax.tree.leaves(updates)]
    return np.concatenate(outputs)


class UpdateMonitor:
    """What the optimizer's steps add up to over each PPO update must be finite. (Resting
    under zero gradients and descent cannot be read off a training run: momentum moves on
    zero gradients, and single steps of a valid optimizer may go uphill.)"""

    def noise_size(self, minibatch: int) -> int:
        return 0

    def inspect_updates(self, updates):
        import jax
        import jax.numpy as jnp

        bad = sum(jnp.sum(~jnp.isfinite(u)) for u in jax.tree.leaves(updates))
        return {"finite": {"score": jnp.where(bad > 0, 1.0, -1.0), "entries": bad}}

    def describe(self, condition: str, f: dict[str, float], update: int) -> str:
        return f"non-finite updates during training: {int(f['entries'])} entries at update {update}"


PIECE = Piece(
    kind="optimizer",
    plug_point=PlugPoint.OPTIMIZER,
    contract=Contract.TRANSFORMATION,
    arity=2,
    default=("optimizer", "adam"),
    check=check_optimizer,
    behaviour=behaviour,
    evidence=(
        "The optimizer conditions (fixed state structure, finite updates under random gradients, "
        "rest under zero gradients, descent on a quadratic) are checked by running it on a small "
        "parameter tree: evidence about these cases, not a proof."
    ),
    monitor=UpdateMonitor(),
)
