"""Expression trees: the genome of the offline mutation proposer, and what the sandbox's
interpreter runs (sandbox/training/bytecode.py) instead of executing a candidate's code.

A tree is built from constants, named variables (a task's inputs) and operators from a small
fixed table. Trees are immutable, hashable and our own data, so they are evaluated in-process
with numpy. This module does four jobs on them:

- build and vary: random trees (grow / full), subtree and point mutation, Gaussian constant
  perturbation, subtree crossover, shrinking, placeholder substitution, light simplification;
- evaluate with numpy (optionally refusing any non-finite or huge intermediate value, since a
  NaN or inf in an unused `where` branch still poisons JAX gradients);
- render to jax.numpy source (repeated subtrees become local variables) and describe in
  short human-readable notation;
- parse a candidate module back into a tree: `ast.parse` only, never executed, and None for
  anything outside the grammar (loops, helpers, unknown calls).
"""

from __future__ import annotations

import ast
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

# --- nodes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple["Node", ...]


Node = Const | Var | Op
Path = tuple[int, ...]


# --- the operator table ----------------------------------------------------------------------


def _relu(x):
    return np.maximum(x, 0.0)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, without exp overflow warnings


@dataclass(frozen=True)
class OpSpec:
    arity: int
    numpy: Callable[..., np.ndarray]
    call: str = ""  # the jax function for call-style rendering
    infix: str = ""  # the Python operator for infix rendering
    short: str = ""  # the name in notes


OPS: dict[str, OpSpec] = {
    "add": OpSpec(2, np.add, infix="+"),
    "sub": OpSpec(2, np.subtract, infix="-"),
    "mul": OpSpec(2, np.multiply, infix="*"),
    "div": OpSpec(2, np.divide, infix="/"),
    "neg": OpSpec(1, np.negative),
    "tanh": OpSpec(1, np.tanh, call="jnp.tanh", short="tanh"),
    "relu": OpSpec(1, _relu, call="jax.nn.relu", short="relu"),
    "square": OpSpec(1, np.square, call="jnp.square", short="sq"),
    "abs": OpSpec(1, np.abs, call="jnp.abs", short="abs"),
    "log": OpSpec(1, np.log, call="jnp.log", short="log"),
    "exp": OpSpec(1, np.exp, call="jnp.exp", short="exp"),
    "softplus": OpSpec(1, _softplus, call="jax.nn.softplus", short="softplus"),
    "sigmoid": OpSpec(1, _sigmoid, call="jax.nn.sigmoid", short="sigmoid"),
    "maximum": OpSpec(2, np.maximum, call="jnp.maximum", short="max"),
    "minimum": OpSpec(2, np.minimum, call="jnp.minimum", short="min"),
    "clip": OpSpec(
        3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), call="jnp.clip", short="clip"
    ),
    # where(c, a, b) means where(c >= 0, a, b); where_gt means where(c > 0, a, b).
    "where": OpSpec(3, lambda c, a, b: np.where(c >= 0, a, b), short="where"),
    "where_gt": OpSpec(3, lambda c, a, b: np.where(c > 0, a, b), short="where"),
}

# Binding strength for rendering: sums < products < unary minus < calls and atoms.
_PRECEDENCE = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3}
_ATOM = 4


@dataclass(frozen=True)
class Grammar:
    """What random material may be built from: named terminal subtrees (an input, or a
    derived quantity such as r - 1), operators, a range for fresh constants, and
    validity-preserving wrappers (trees over placeholder variables X and D)."""

    terminals: dict[str, Node]
    ops: tuple[str, ...]
    constant_range: tuple[float, float] = (-2.0, 2.0)
    p_constant: float = 0.15  # chance that a leaf is a fresh constant rather than a terminal
    wrappers: dict[str, Node] = field(default_factory=dict)

    @property
    def atoms(self) -> frozenset[Node]:
        return frozenset(self.terminals.values())

    def ops_of_arity(self, arity: int) -> list[str]:
        return [name for name in self.ops if OPS[name].arity == arity]


# --- structure -------------------------------------------------------------------------------


def children(node: Node) -> tuple[Node, ...]:
    return node.args if isinstance(node, Op) else ()


def walk(node: Node, path: Path = ()) -> Iterator[tuple[Path, Node]]:
    """Every subtree with its path, parents before children."""
    yield path, node
    for i, child in enumerate(children(node)):
        yield from walk(child, path + (i,))


def size(node: Node, atoms: frozenset[Node] = frozenset()) -> int:
    """Nodes in the tree, each of `atoms` (a grammar's terminals, e.g. r - 1) counting as one."""
    if node in atoms:
        return 1
    return 1 + sum(size(c, atoms) for c in children(node))


def depth(node: Node, atoms: frozenset[Node] = frozenset()) -> int:
    """Levels of operators above the deepest leaf; a leaf or one of `atoms` has depth 0."""
    if not isinstance(node, Op) or node in atoms:
        return 0
    return 1 + max(depth(c, atoms) for c in node.args)


def get(node: Node, path: Path) -> Node:
    for i in path:
        node = node.args[i]
    return node


def replace(node: Node, path: Path, new: Node) -> Node:
    if not path:
        return new
    assert isinstance(node, Op)
    args = list(node.args)
    args[path[0]] = replace(args[path[0]], path[1:], new)
    return Op(node.name, tuple(args))


def variables(node: Node) -> set[str]:
    return {n.name for _, n in walk(node) if isinstance(n, Var)}


def substitute(node: Node, mapping: dict[str, Node]) -> Node:
    """Replace variables by subtrees (placeholders of a wrapper, or an input fixed to a value)."""
    if isinstance(node, Var):
        return mapping.get(node.name, node)
    if isinstance(node, Op):
        return Op(node.name, tuple(substitute(c, mapping) for c in node.args))
    return node


# --- random construction and variation ------------------------------------------------------


def _round(value: float, digits: int = 3) -> float:
    """Constants with a few significant digits keep rendered code readable."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(f"{value:.{digits}g}")


def random_constant(rng: random.Random, grammar: Grammar) -> Const:
    low, high = grammar.constant_range
    return Const(_round(rng.uniform(low, high), 2))


def random_leaf(rng: random.Random, grammar: Grammar) -> Node:
    if not grammar.terminals or rng.random() < grammar.p_constant:
        return random_constant(rng, grammar)
    return grammar.terminals[rng.choice(list(grammar.terminals))]


def random_tree(rng: random.Random, grammar: Grammar, max_depth: int, method: str = "grow") -> Node:
    """A random tree of operator depth <= max_depth. `full` puts operators on every level
    above the last; `grow` stops early at random."""
    if max_depth <= 0 or not grammar.ops or (method == "grow" and rng.random() < 0.3):
        return random_leaf(rng, grammar)
    name = rng.choice(grammar.ops)
    return Op(
        name,
        tuple(random_tree(rng, grammar, max_depth - 1, method) for _ in range(OPS[name].arity)),
    )


def ramped_tree(rng: random.Random, grammar: Grammar, max_depth: int) -> Node:
    """Ramped half-and-half: a random depth in 1..max_depth and either method."""
    return random_tree(
        rng, grammar, rng.randint(1, max(1, max_depth)), rng.choice(("grow", "full"))
    )


def pick_path(rng: random.Random, node: Node, p_internal: float = 0.9) -> Path:
    """A random subtree, favouring operators over leaves (Koza's 90/10 rule) since leaf
    swaps change little."""
    paths = [p for p, _ in walk(node)]
    internal = [p for p in paths if isinstance(get(node, p), Op)]
    if internal and rng.random() < p_internal:
        return rng.choice(internal)
    return rng.choice(paths)


def subtree_mutation(
    rng: random.Random, tree: Node, grammar: Grammar, max_depth: int
) -> tuple[Node, Path, Node]:
    """Replace a random subtree by a fresh random one; returns the child, the path and the new
    subtree."""
    path = pick_path(rng, tree)
    budget = max(1, min(3, max_depth - len(path)))
    new = ramped_tree(rng, grammar, budget)
    return replace(tree, path, new), path, new


def point_mutation(rng: random.Random, tree: Node, grammar: Grammar) -> tuple[Node, Path, Node]:
    """Change one node in place: an operator for another of the same arity, a leaf for another
    leaf."""
    path = pick_path(rng, tree, p_internal=0.6)
    node = get(tree, path)
    if isinstance(node, Op):
        options = [n for n in grammar.ops_of_arity(len(node.args)) if n != node.name]
        if not options:
            return tree, path, node
        new: Node = Op(rng.choice(options), node.args)
    else:
        new = random_leaf(rng, grammar)
    return replace(tree, path, new), path, new


def constants(tree: Node) -> list[tuple[Path, float]]:
    return [(p, n.value) for p, n in walk(tree) if isinstance(n, Const)]


def perturb_constants(
    rng: random.Random, tree: Node, sigma: float = 0.2, tied: bool = True
) -> tuple[Node, float, float] | None:
    """Gaussian perturbation of one constant value. With `tied`, every occurrence of that value
    moves together: parsed code inlines a named constant (DPO's alpha) in several places."""
    found = constants(tree)
    if not found:
        return None
    old = rng.choice(sorted({v for _, v in found}))
    scale = sigma * max(abs(old), 0.1)
    new = old
    for _ in range(10):  # rounding can map a small step back onto the old value
        new = _round(old + rng.gauss(0.0, scale))
        if new != old:
            break
    targets = [p for p, v in found if v == old]
    if not tied:
        targets = [rng.choice(targets)]
    for path in targets:
        tree = replace(tree, path, Const(new))
    return tree, old, new


def shrink_mutation(rng: random.Random, tree: Node) -> tuple[Node, Path, Node] | None:
    """Replace an operator by one of its own arguments: the anti-bloat move."""
    internal = [p for p, n in walk(tree) if isinstance(n, Op)]
    if not internal:
        return None
    path = rng.choice(internal)
    new = rng.choice(get(tree, path).args)
    return replace(tree, path, new), path, new


def insert_mutation(
    rng: random.Random, tree: Node, grammar: Grammar
) -> tuple[Node, Path, Node] | None:
    """Put a new operator above a random subtree, the subtree becoming one of its arguments."""
    if not grammar.ops:
        return None
    path = pick_path(rng, tree, p_internal=0.5)
    old = get(tree, path)
    name = rng.choice(grammar.ops)
    arity = OPS[name].arity
    args = [
        ramped_tree(rng, grammar, 1) if rng.random() < 0.5 else random_leaf(rng, grammar)
        for _ in range(arity)
    ]
    args[rng.randrange(arity)] = old
    new = Op(name, tuple(args))
    return replace(tree, path, new), path, new


def crossover(rng: random.Random, a: Node, b: Node) -> tuple[Node, Path, Node]:
    """Subtree crossover: a random subtree of `a` replaced by a random subtree of `b`."""
    path = pick_path(rng, a)
    donor = get(b, pick_path(rng, b))
    return replace(a, path, donor), path, donor


def wrap(wrapper: Node, x: Node | None = None, d: Node | None = None) -> Node:
    """Fill a wrapper's placeholders: X with any expression, D with the current whole tree."""
    mapping = {}
    if x is not None:
        mapping["X"] = x
    if d is not None:
        mapping["D"] = d
    return substitute(wrapper, mapping)


# --- simplification ---------------------------------------------------------------------------


def _is_const(node: Node, value: float | None = None) -> bool:
    return isinstance(node, Const) and (value is None or node.value == value)


def simplify(node: Node, digits: int | None = None) -> Node:
    """Fold constant subtrees and remove identities (x + 0, x * 1, --x, |x|², max(x, x)...), so
    no-op variations are recognised and rendered code stays short. With `digits`, folded
    constants are rounded to that many significant digits (for children, not parsed parents,
    whose values must stay exact)."""
    if not isinstance(node, Op):
        return node
    args = tuple(simplify(c, digits) for c in node.args)
    name = node.name
    if all(isinstance(a, Const) for a in args):
        with np.errstate(all="ignore"):
            value = float(OPS[name].numpy(*(np.float64(a.value) for a in args)))
        if math.isfinite(value):
            return Const(value if digits is None else _round(value, digits))
    a = args[0]
    b = args[1] if len(args) > 1 else None
    if name == "add":
        if _is_const(a, 0.0):
            return b
        if _is_const(b, 0.0):
            return a
    elif name == "sub":
        if _is_const(b, 0.0):
            return a
        if _is_const(a, 0.0):
            return simplify(Op("neg", (b,)), digits)
        if a == b:
            return Const(0.0)
    elif name == "mul":
        if _is_const(a, 1.0):
            return b
        if _is_const(b, 1.0):
            return a
        if _is_const(a, 0.0) or _is_const(b, 0.0):
            return Const(0.0)
    elif name == "div" and _is_const(b, 1.0):
        return a
    elif name == "neg" and isinstance(a, Op) and a.name == "neg":
        return a.args[0]
    elif name in ("square", "abs") and isinstance(a, Op) and a.name in ("abs", "neg"):
        return simplify(Op(name, a.args), digits)
    elif (
        name == "abs"
        and isinstance(a, Op)
        and a.name in ("square", "abs", "relu", "softplus", "sigmoid")
    ):
        return a
    elif (
        name == "relu"
        and isinstance(a, Op)
        and a.name in ("relu", "square", "abs", "softplus", "sigmoid")
    ):
        return a
    elif name in ("maximum", "minimum") and a == b:
        return a
    elif name in ("where", "where_gt") and args[1] == args[2]:
        return args[1]
    return Op(name, args)


# --- numpy evaluation --------------------------------------------------------------------------


class Unbounded(ArithmeticError):
    """An intermediate value was NaN, infinite or beyond the bound."""


def evaluate(node: Node, env: dict[str, np.ndarray], bound: float | None = None) -> np.ndarray:
    """The tree's value on arrays of its variables (broadcast together). With `bound`, raise
    Unbounded as soon as any intermediate value, used or not, is non-finite or larger than it."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in env.values())) if env else ()
    with np.errstate(all="ignore"):
        value = _evaluate(node, env, bound)
    return np.broadcast_to(np.asarray(value, np.float64), shape)


def _evaluate(node: Node, env, bound):
    if isinstance(node, Const):
        value = np.float64(node.value)
    elif isinstance(node, Var):
        value = env[node.name]
    else:
        value = OPS[node.name].numpy(*(_evaluate(c, env, bound) for c in node.args))
    if bound is not None and not np.all(np.abs(value) <= bound):  # NaN fails the comparison too
        raise Unbounded(node)
    return value


def derivative(node: Node, env: dict[str, np.ndarray], wrt: str) -> tuple[np.ndarray, np.ndarray]:
    """Value and forward-mode derivative in the variable `wrt`, following JAX's conventions at
    kinks (max/min split ties evenly, relu'(0) = 0, |x|'(0) = 1, where picks by its condition)
    so that a slope checked here is the slope the sandbox's autodiff will see."""
    with np.errstate(all="ignore"):
        value, slope = _derivative(node, env, wrt)
    shape = np.broadcast_shapes(*(np.shape(v) for v in env.values())) if env else ()
    return np.broadcast_to(np.asarray(value, np.float64), shape), np.broadcast_to(
        np.asarray(slope, np.float64), shape
    )


def _tie_weights(x, y):
    """d max(x, y) = wx·dx + wy·dy in JAX: all to the larger, half each on a tie."""
    wx = np.where(x > y, 1.0, np.where(x == y, 0.5, 0.0))
    return wx, 1.0 - wx


def _derivative(node: Node, env, wrt):
    if isinstance(node, Const):
        return np.float64(node.value), np.float64(0.0)
    if isinstance(node, Var):
        value = env[node.name]
        return value, (np.ones_like(value) if node.name == wrt else np.float64(0.0))
    pairs = [_derivative(c, env, wrt) for c in node.args]
    values = [v for v, _ in pairs]
    value = OPS[node.name].numpy(*values)
    (x, dx), *rest = pairs
    name = node.name
    if name in ("add", "sub"):
        dy = rest[0][1]
        return value, dx + dy if name == "add" else dx - dy
    if name == "mul":
        y, dy = rest[0]
        return value, dx * y + x * dy
    if name == "div":
        y, dy = rest[0]
        return value, (dx * y - x * dy) / (y * y)
    if name == "neg":
        return value, -dx
    if name == "tanh":
        return value, (1.0 - value * value) * dx
    if name == "relu":
        return value, np.where(x > 0, dx, 0.0)
    if name == "square":
        return value, 2.0 * x * dx
    if name == "abs":
        return value, np.where(x >= 0, dx, -dx)
    if name == "log":
        return value, dx / x
    if name == "exp":
        return value, value * dx
    if name == "softplus":
        return value, _sigmoid(x) * dx
    if name == "sigmoid":
        return value, value * (1.0 - value) * dx
    if name in ("maximum", "minimum"):
        y, dy = rest[0]
        wx, wy = _tie_weights(x, y) if name == "maximum" else _tie_weights(-x, -y)
        return value, wx * dx + wy * dy
    if name == "clip":  # jnp.clip is minimum(hi, maximum(lo, x))
        (lo, dlo), (hi, dhi) = rest
        inner = np.maximum(lo, x)
        w_lo, w_x = _tie_weights(lo, x)
        d_inner = w_lo * dlo + w_x * dx
        w_hi, w_inner = _tie_weights(-hi, -inner)
        return value, w_hi * dhi + w_inner * d_inner
    if name in ("where", "where_gt"):
        (_, da), (_, db) = rest
        chosen = x >= 0 if name == "where" else x > 0
        return value, np.where(chosen, da, db)
    raise KeyError(name)


# --- rendering ------------------------------------------------------------------------------------


def _format_const(value: float) -> str:
    return repr(float(value))


def _render(node: Node) -> tuple[str, int]:
    """Source text and its binding strength."""
    if isinstance(node, Const):
        text = _format_const(node.value)
        return text, (3 if text.startswith("-") else _ATOM)
    if isinstance(node, Var):
        return node.name, _ATOM
    spec = OPS[node.name]
    if spec.infix:
        prec = _PRECEDENCE[node.name]
        left, lp = _render(node.args[0])
        right, rp = _render(node.args[1])
        # Parenthesise the right operand at equal strength too: the parse of the rendered code
        # must give back the same tree, since float addition is not associative.
        left = f"({left})" if lp < prec else left
        right = f"({right})" if rp <= prec or rp == 3 else right  # `x - (-y)`, not `x - -y`
        return f"{left} {spec.infix} {right}", prec
    if node.name == "neg":
        inner, ip = _render(node.args[0])
        return f"-({inner})" if ip <= 3 else f"-{inner}", 3
    if node.name in ("where", "where_gt"):
        cmp = ">=" if node.name == "where" else ">"
        cond = node.args[0]
        if isinstance(cond, Op) and cond.name == "sub":  # c = l - r reads better as l >= r
            test = f"{_render(cond.args[0])[0]} {cmp} {_render(cond.args[1])[0]}"
        else:
            test = f"{_render(cond)[0]} {cmp} 0"
        return f"jnp.where({test}, {_render(node.args[1])[0]}, {_render(node.args[2])[0]})", _ATOM
    return f"{spec.call}({', '.join(_render(c)[0] for c in node.args)})", _ATOM


def _shared_subtrees(node: Node, min_size: int) -> list[Node]:
    """Subtrees worth a local variable: used more than once and not tiny, largest first."""
    counts = Counter(n for _, n in walk(node) if isinstance(n, Op) and size(n) >= min_size)
    return sorted((n for n, k in counts.items() if k > 1), key=size, reverse=True)


def render_body(node: Node, inputs: tuple[str, ...], min_shared: int = 4) -> str:
    """The body of the entry point: local variables for repeated subtrees, then `return ...`.
    A tree without variables still returns an array of the inputs' shape."""
    if not variables(node) & set(inputs):
        value = evaluate(node, {})
        shape_of = " * ".join(inputs)
        return f"return jnp.zeros_like({shape_of})" + (
            "" if float(value) == 0.0 else f" + {_format_const(float(value))}"
        )
    definitions: list[tuple[str, Node]] = []
    while shared := _shared_subtrees(node, min_shared):
        name = f"t{len(definitions) + 1}"
        while name in inputs:
            name += "_"
        sub = shared[0]
        definitions = [(n, substitute_subtree(d, sub, Var(name))) for n, d in definitions]
        definitions.append((name, sub))
        node = substitute_subtree(node, sub, Var(name))
    lines = [f"{name} = {_render(d)[0]}" for name, d in _topological(definitions)]
    return "\n".join(lines + [f"return {_render(node)[0]}"])


def substitute_subtree(node: Node, old: Node, new: Node) -> Node:
    if node == old:
        return new
    if isinstance(node, Op):
        return Op(node.name, tuple(substitute_subtree(c, old, new) for c in node.args))
    return node


def _topological(definitions: list[tuple[str, Node]]) -> list[tuple[str, Node]]:
    """Definitions ordered so that each only uses names defined above it."""
    pending = list(definitions)
    done: list[tuple[str, Node]] = []
    names = {n for n, _ in definitions}
    while pending:
        defined = {n for n, _ in done}
        for item in pending:
            if (variables(item[1]) & names) <= defined:
                done.append(item)
                pending.remove(item)
                break
        else:  # cannot happen for trees; keep the order rather than loop forever
            return done + pending
    return done


def describe(node: Node, names: dict[Node, str] | None = None, limit: int = 90) -> str:
    """Short notation for notes: terminals by their grammar names, e.g. relu(r-1)*|A|."""
    text = _describe(node, names or {})
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(node: Node, names: dict[Node, str]) -> str:
    if node in names:
        return names[node]
    if isinstance(node, Const):
        return f"{node.value:.4g}"
    if isinstance(node, Var):
        return node.name
    args = [_describe(c, names) for c in node.args]
    spec = OPS[node.name]
    if spec.infix:
        wrapped = [
            f"({a})"
            if isinstance(c, Op) and OPS[c.name].infix and c.name not in ("mul", "div")
            else a
            for a, c in zip(args, node.args)
        ]
        return f"{wrapped[0]}{spec.infix}{wrapped[1]}"
    if node.name == "neg":
        return f"-{args[0]}" if not isinstance(node.args[0], Op) else f"-({args[0]})"
    if node.name in ("where", "where_gt"):
        return f"where({args[0]}{'>=' if node.name == 'where' else '>'}0, {args[1]}, {args[2]})"
    return f"{spec.short}({', '.join(args)})"


# --- parsing --------------------------------------------------------------------------------------

# jax functions in the grammar, by canonical dotted name.
_CALLS = {
    "jnp.tanh": "tanh",
    "jnp.square": "square",
    "jnp.abs": "abs",
    "jnp.absolute": "abs",
    "abs": "abs",
    "jnp.log": "log",
    "jnp.exp": "exp",
    "jnp.maximum": "maximum",
    "jnp.minimum": "minimum",
    "jnp.clip": "clip",
    "jnp.where": "where",
    "jnp.negative": "neg",
    "jax.nn.relu": "relu",
    "jax.nn.softplus": "softplus",
    "jax.nn.sigmoid": "sigmoid",
}
_SHAPE_ONLY = {"jnp.zeros_like": 0.0, "jnp.ones_like": 1.0}  # the value ignores the argument
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
_MODULES = {"jax": "jax", "jax.numpy": "jnp", "jax.nn": "jax.nn"}


MAX_PARSED_NODES = 500  # inlining `x = x + x` repeatedly would otherwise build an exponential tree


class _Unsupported(Exception):
    """Outside the grammar; the parse gives None."""


def _checked(node: Node) -> Node:
    """`node`, unless its tree (counting shared subtrees every time they occur) is too large.
    Counted by object identity: hashing a tree with many shared subtrees is itself exponential."""
    sizes: dict[int, int] = {}

    def count(n: Node) -> int:
        if id(n) not in sizes:
            sizes[id(n)] = 1 + sum(count(c) for c in children(n))
            if sizes[id(n)] > MAX_PARSED_NODES:
                raise _Unsupported
        return sizes[id(n)]

    count(node)
    return node


def parse_expression(
    text: str, inputs: tuple[str, ...], placeholders: tuple[str, ...] = ()
) -> Node | None:
    """A tree for one expression in the inputs (terminals and wrappers in task.toml)."""
    try:
        expression = ast.parse(text.strip(), mode="eval").body
        return _Parser(dict.fromkeys(inputs + placeholders), {}, {"jnp": "jnp", "jax": "jax"}).expr(
            expression
        )
    except (_Unsupported, SyntaxError, RecursionError, ValueError):
        return None


def parse_function(source: str, entry_point: str, inputs: tuple[str, ...]) -> Node | None:
    """A tree for the entry point of a candidate module, or None when the function is not a
    sequence of simple assignments and one return of a grammar expression."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    aliases = {"jnp": "jnp", "jax": "jax"}
    constants: dict[str, Node] = {}
    function = None
    try:
        for statement in module.body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                _collect_aliases(statement, aliases)
            elif isinstance(statement, ast.FunctionDef) and statement.name == entry_point:
                function = statement
            elif isinstance(statement, ast.Assign) and all(
                isinstance(t, ast.Name) for t in statement.targets
            ):
                value = _Parser({}, constants, aliases).expr(
                    statement.value
                )  # module constants only
                if not isinstance(value, Const):
                    raise _Unsupported
                constants.update({t.id: value for t in statement.targets})
        if function is None:
            return None
        return _parse_body(function, inputs, constants, aliases)
    except (_Unsupported, RecursionError):
        return None


def parse_module(source: str, entry_point: str, inputs: tuple[str, ...]) -> Node | None:
    """The tree of a module that does nothing but compute it: imports, numeric constants and
    the entry point, undecorated, unannotated, taking exactly `inputs`, and nothing else at
    module level. Running the tree then means the same as running the module (up to float
    rounding), since executing the module has no other effect. None otherwise."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for statement in module.body:
        if isinstance(statement, ast.FunctionDef):
            args = statement.args
            if (
                statement.name != entry_point
                or statement.decorator_list
                or statement.returns is not None
                or args.defaults
                or args.kw_defaults
                or [a.arg for a in args.args] != list(inputs)
                or any(a.annotation is not None for a in args.args)
            ):
                return None
        elif isinstance(statement, ast.Expr):
            if not (
                isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)
            ):
                return None  # a call at import time
        elif not isinstance(statement, (ast.Import, ast.ImportFrom, ast.Assign)):
            return None
    return parse_function(source, entry_point, inputs)


def _collect_aliases(statement: ast.Import | ast.ImportFrom, aliases: dict[str, str]) -> None:
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            if alias.asname:
                if alias.name in _MODULES:
                    aliases[alias.asname] = _MODULES[alias.name]
            elif alias.name.split(".")[0] == "jax":
                aliases["jax"] = "jax"
    else:
        for alias in statement.names:
            full = f"{statement.module}.{alias.name}"
            if full in _MODULES:
                aliases[alias.asname or alias.name] = _MODULES[full]


def _parse_body(
    function: ast.FunctionDef, inputs: tuple[str, ...], constants: dict[str, Node], aliases
) -> Node:
    args = function.args
    if args.vararg or args.kwarg or args.posonlyargs or args.kwonlyargs:
        raise _Unsupported
    names = [a.arg for a in args.args]
    if names[: len(inputs)] != list(inputs):
        raise _Unsupported
    scope: dict[str, Node] = dict(constants)
    defaults = (
        args.defaults[len(args.defaults) - (len(names) - len(inputs)) :]
        if len(names) > len(inputs)
        else []
    )
    if len(defaults) != len(names) - len(inputs):
        raise _Unsupported  # an extra parameter without a default
    parser = _Parser(dict.fromkeys(inputs), scope, aliases)
    for name, default in zip(names[len(inputs) :], defaults):
        scope[name] = parser.expr(default)
    for name in inputs:
        scope.pop(name, None)
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]  # docstring
    for statement in body:
        if isinstance(statement, ast.Return) and statement.value is not None:
            return _checked(parser.expr(statement.value))
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            _assign(parser, statement.targets[0], statement.value)
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            _assign(parser, statement.target, statement.value)
        elif (
            isinstance(statement, ast.AugAssign)
            and isinstance(statement.target, ast.Name)
            and statement.target.id not in parser.inputs
            and type(statement.op) in _BINOPS
        ):
            current = parser.expr(statement.target)
            parser.scope[statement.target.id] = _checked(
                Op(_BINOPS[type(statement.op)], (current, parser.expr(statement.value)))
            )
        elif isinstance(statement, ast.Pass):
            continue
        else:
            raise _Unsupported
    raise _Unsupported  # no return


def _assign(parser: "_Parser", target: ast.expr, value: ast.expr) -> None:
    if isinstance(target, ast.Name):
        if target.id in parser.inputs:
            raise _Unsupported  # rebinding an input would confuse the terminals
        parser.scope[target.id] = _checked(parser.expr(value))
    elif (
        isinstance(target, ast.Tuple)
        and isinstance(value, ast.Tuple)
        and len(target.elts) == len(value.elts)
        and all(isinstance(t, ast.Name) for t in target.elts)
    ):
        parsed = [
            _checked(parser.expr(v)) for v in value.elts
        ]  # right-hand sides first, as Python does
        for t, v in zip(target.elts, parsed):
            if t.id in parser.inputs:
                raise _Unsupported
            parser.scope[t.id] = v
    else:
        raise _Unsupported


def _finite(literal: int | float) -> float:
    """A numeric literal as a float64. One beyond it (a 400-digit integer cannot be
    converted, 1e400 reads as inf) is outside the grammar: no tree holds a constant that
    the code does not spell."""
    try:
        value = float(literal)
    except OverflowError:
        raise _Unsupported from None
    if not math.isfinite(value):
        raise _Unsupported
    return value


@dataclass
class _Parser:
    inputs: dict[str, None]
    scope: dict[str, Node]
    aliases: dict[str, str]

    def expr(self, node: ast.expr) -> Node:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise _Unsupported
            return Const(_finite(node.value))
        if isinstance(node, ast.Name):
            if node.id in self.inputs:
                return Var(node.id)
            if node.id in self.scope:
                return self.scope[node.id]
            raise _Unsupported
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.USub):
                return (
                    Const(-operand.value) if isinstance(operand, Const) else Op("neg", (operand,))
                )
            raise _Unsupported
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                exponent = self.expr(node.right)
                if isinstance(exponent, Const) and exponent.value == 2.0:
                    return Op("square", (self.expr(node.left),))
                if isinstance(exponent, Const) and exponent.value == 1.0:
                    return self.expr(node.left)
                raise _Unsupported
            if type(node.op) not in _BINOPS:
                raise _Unsupported
            return Op(_BINOPS[type(node.op)], (self.expr(node.left), self.expr(node.right)))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _Unsupported

    def dotted(self, node: ast.expr) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            raise _Unsupported
        if node.id in self.aliases:
            head = self.aliases[node.id]
        elif not parts and node.id == "abs":
            head = "abs"
        else:
            raise _Unsupported
        name = ".".join([head, *reversed(parts)])
        return "jnp." + name[len("jax.numpy.") :] if name.startswith("jax.numpy.") else name

    def call(self, node: ast.Call) -> Node:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _Unsupported
        name = self.dotted(node.func)
        if name in _SHAPE_ONLY and len(node.args) == 1:
            self.expr(node.args[0])  # must still be in the grammar
            return Const(_SHAPE_ONLY[name])
        if name == "jnp.full_like" and len(node.args) == 2:
            self.expr(node.args[0])
            value = self.expr(node.args[1])
            if not isinstance(value, Const):
                raise _Unsupported
            return value
        if name not in _CALLS:
            raise _Unsupported
        op = _CALLS[name]
        if op == "where":
            if len(node.args) != 3:
                raise _Unsupported
            op, cond = self.condition(node.args[0])
            return Op(op, (cond, self.expr(node.args[1]), self.expr(node.args[2])))
        if len(node.args) != OPS[op].arity:
            raise _Unsupported
        return Op(op, tuple(self.expr(a) for a in node.args))

    def condition(self, node: ast.expr) -> tuple[str, Node]:
        """`a >= b` as where(a - b), `a > b` as where_gt(a - b), and the mirrored forms."""
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            raise _Unsupported
        left, right = self.expr(node.left), self.expr(node.comparators[0])
        op = node.ops[0]
        if isinstance(op, (ast.LtE, ast.Lt)):
            left, right = right, left
        elif not isinstance(op, (ast.GtE, ast.Gt)):
            raise _Unsupported
        strict = isinstance(op, (ast.Gt, ast.Lt))
        if _is_const(right, 0.0):
            cond = left
        elif _is_const(left, 0.0):
            cond = Op("neg", (right,))
        else:
            cond = Op("sub", (left, right))
        return ("where_gt" if strict else "where"), cond
