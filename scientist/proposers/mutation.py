"""The offline `mutation` proposer: genetic programming over expression trees.

Parents (already selected by the caller) are parsed back into trees; a child comes from
subtree crossover or a blend of two parents, from one of several mutations of the primary
parent, or from a fresh random tree inside a validity-preserving wrapper. The grammar (the
terminals, operators, constant range and wrappers) is the `[mutation]` table of the task's
task.toml; a task without one cannot be searched this way.

Random trees are rarely valid drifts or value losses, so each child is pre-screened with
numpy before it is proposed, and variation retries until one passes. The screen is the
kind of piece's own (sandbox/pieces: the sandbox's conditions and tolerances on coarser
points) but only an efficiency filter: the sandbox re-checks everything. No candidate code
runs here, and no randomness but request.rng.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from sandbox import expressions as ex
from sandbox import formulas
from sandbox.pieces.base import Screen
from sandbox.tasks import TaskSpec
from sandbox.vocabulary import Origin, Status
from scientist.proposers.base import ParentView, Proposal, ProposalRequest, ProposerError

DEFAULT_OPS = (
    "add",
    "sub",
    "mul",
    "neg",
    "tanh",
    "relu",
    "square",
    "abs",
    "maximum",
    "minimum",
    "where",
)
GRAMMAR_TABLE = "mutation"  # the [mutation] table of a task.toml
BOUND = 1e30  # intermediate values beyond this overflow float32 in training or NaN a gradient
PLACEHOLDERS = ("X", "D")


def load_grammar(task: TaskSpec) -> ex.Grammar | None:
    """The task's [mutation] table as a Grammar, None when it declares none."""
    path = task.folder / "task.toml"
    raw = tomllib.loads(path.read_text()).get(GRAMMAR_TABLE)
    if raw is None:
        return None
    inputs = tuple(task.inputs)

    def parse(kind: str, name: str, text: str, placeholders: tuple[str, ...] = ()) -> ex.Node:
        tree = ex.parse_expression(text, inputs, placeholders) if isinstance(text, str) else None
        if tree is None:
            raise ProposerError(
                f"{path}: [mutation.{kind}] {name!r} = {text!r} is not an expression of the grammar"
            )
        return tree

    ops = tuple(raw.get("ops", DEFAULT_OPS))
    unknown = [op for op in ops if op not in ex.OPS]
    if unknown:
        raise ProposerError(
            f"{path}: [mutation] ops {unknown} are unknown; known: {', '.join(ex.OPS)}"
        )
    low, high = (float(v) for v in raw.get("constants", (-2.0, 2.0)))
    terminals = {
        name: parse("terminals", name, text) for name, text in raw.get("terminals", {}).items()
    }
    if not terminals:
        raise ProposerError(
            f"{path}: [mutation] needs at least one terminal in [mutation.terminals]"
        )
    wrappers = {
        name: parse("wrappers", name, text, PLACEHOLDERS)
        for name, text in raw.get("wrappers", {}).items()
    }
    return ex.Grammar(terminals=terminals, ops=ops, constant_range=(low, high), wrappers=wrappers)


def _without(grammar: ex.Grammar, names: set[str]) -> ex.Grammar:
    """The grammar less the named terminals and wrappers."""
    unknown = names - set(grammar.terminals) - set(grammar.wrappers)
    if unknown:
        known = ", ".join([*grammar.terminals, *grammar.wrappers])
        raise ProposerError(f"not in the grammar: {', '.join(sorted(unknown))}; it has {known}")
    terminals = {n: t for n, t in grammar.terminals.items() if n not in names}
    if not terminals:
        raise ProposerError("leaving those out leaves the grammar no terminal")
    wrappers = {n: t for n, t in grammar.wrappers.items() if n not in names}
    return dataclasses.replace(grammar, terminals=terminals, wrappers=wrappers)


# --- the pre-screen ------------------------------------------------------------------------------


class TreeProbe:
    """An expression tree as a piece's Probe: numpy values, with every intermediate value
    bounded (an overflow in float32 training, or a NaN gradient, raises ex.Unbounded), and
    the slope JAX's autodiff would report, kinks included."""

    def __init__(self, tree: ex.Node, inputs: tuple[str, ...]):
        self.tree, self.inputs = tree, inputs

    def values(self, *arrays: np.ndarray) -> np.ndarray:
        return ex.evaluate(self.tree, dict(zip(self.inputs, arrays)), BOUND)

    def slope(self, *arrays: np.ndarray) -> np.ndarray:
        return ex.derivative(self.tree, dict(zip(self.inputs, arrays)), self.inputs[0])[1]


class TreeScreen:
    """The piece's own pre-screen (its conditions and tolerances, on coarser points) applied
    to expression trees."""

    def __init__(self, screen: Screen, inputs: tuple[str, ...]):
        self.screen, self.inputs = screen, inputs
        self.anchor = (dict(zip(inputs, screen.anchor)), inputs[0])

    def fingerprint(self, tree: ex.Node) -> np.ndarray:
        """Values on a small grid: equal fingerprints mean a variation changed nothing."""
        return ex.evaluate(tree, dict(zip(self.inputs, self.screen.fingerprint)))

    def reject(self, tree: ex.Node) -> str | None:
        """Why the tree is not valid, or None when it passes the screen."""
        return self.screen.check(TreeProbe(tree, self.inputs))


def anchor_signature(screen: TreeScreen, tree: ex.Node) -> np.ndarray:
    """Value and slope where validity is decided (r = 1 for drifts, prediction = target for
    value losses). Swapping subtrees that agree there tends to keep a child valid."""
    env, wrt = screen.anchor
    value, slope = ex.derivative(tree, env, wrt)
    return np.concatenate([value, slope])


# --- the proposer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parent:
    view: ParentView
    tree: ex.Node
    fingerprint: np.ndarray


@dataclass(frozen=True)
class _Child:
    tree: ex.Node
    note: str
    parent_ids: tuple[int, ...]
    limit_from: tuple[ex.Node, ...] = ()  # parents whose size and depth the child may reach


# How a mutation of the primary parent is chosen: (mutation, weight).
MUTATIONS = (
    ("subtree", 0.25),
    ("point", 0.15),
    ("constant", 0.2),
    ("insert", 0.1),
    ("shrink", 0.1),
    ("wrap", 0.2),
)


class MutationProposer:
    """Variation for genetic programming: crossover, mutation or a random tree, each child
    pre-screened with numpy before it is proposed."""

    name = Origin.MUTATION

    def __init__(
        self,
        task: TaskSpec,
        *,
        max_depth: int = 5,
        max_nodes: int = 30,
        p_crossover: float = 0.3,
        p_random: float = 0.1,
        prescreen: bool = True,
        max_attempts: int = 50,
        without: Collection[str] = (),
    ):
        """`without`: names of the grammar's terminals and wrappers to leave out (an
        ablation: say, PPO's clip, so that a search cannot assemble PPO from one piece)."""
        grammar = load_grammar(task)
        if grammar is None or task.piece.screen is None:
            raise ProposerError(
                f"task {task.name} declares no [mutation] grammar; use --proposer llm"
            )
        grammar = _without(grammar, set(without))
        self.task = task
        self.grammar = grammar
        self.inputs = tuple(task.inputs)
        self.screen = TreeScreen(task.piece.screen, self.inputs)
        self.max_depth, self.max_nodes = max_depth, max_nodes
        self.p_crossover, self.p_random = p_crossover, p_random
        self.prescreen, self.max_attempts = prescreen, max_attempts
        self.atoms = grammar.atoms
        self.names = {  # for notes: terminals by their grammar names, inputs as formulas show them
            **{ex.Var(n): formulas.symbol(n) for n in self.inputs},
            **{tree: name for name, tree in grammar.terminals.items()},
        }
        self.stats: Counter[str] = (
            Counter()
        )  # cumulative: proposals, attempts, rejections by reason
        self._proposed: dict[str, None] = {}  # recent proposals, oldest first: none is made twice
        self._signatures: dict[ex.Node, np.ndarray] = {}  # anchor signatures of parents' subtrees

    # parsing ----------------------------------------------------------------------------------

    def parse(self, code: str) -> ex.Node | None:
        """The tree of a candidate module's entry point, None outside the grammar."""
        tree = ex.parse_function(code, self.task.entry_point, self.inputs)
        return None if tree is None else ex.simplify(tree)

    def render(self, tree: ex.Node) -> str:
        return self.task.render(body=ex.render_body(tree, self.inputs))

    @staticmethod
    def _simplify(tree: ex.Node) -> ex.Node:
        return ex.simplify(tree, digits=4)  # folded constants of a child stay readable

    def describe(self, tree: ex.Node) -> str:
        return ex.describe(ex.simplify(tree), self.names, limit=70)

    def _legible(self, child: _Child, parents: list[_Parent]) -> _Child:
        """The child in the simplest equivalent form sympy finds (sandbox/formulas.py), when
        that passes the pre-screen and the size limits too (its slopes at kinks may follow
        other conventions; it may spell out a terminal such as r - 1 another way)."""
        tree = formulas.simplest(child.tree, self.inputs).tree
        if tree == child.tree:
            return child
        simpler = dataclasses.replace(
            child, tree=tree, note=f"{child.note}; simplest form {self.describe(tree)}"
        )
        return simpler if self._reject(simpler, parents) is None else child

    # proposing ----------------------------------------------------------------------------------

    def record_outcome(self, model: str, fitness_improved: bool) -> None:
        pass  # no models to weigh

    def propose(self, request: ProposalRequest) -> Proposal:
        rng = request.rng
        parents, skipped = [], []
        for view in request.parents:
            tree = self.parse(view.code)
            if tree is None:
                skipped.append(view.id)
            else:
                parents.append(_Parent(view, tree, self.screen.fingerprint(tree)))
        known_code = {view.code.strip() for view in request.parents} | {
            self.render(p.tree).strip() for p in parents
        }

        draw = rng.random()
        if not parents or draw < self.p_random:
            operator = "random"
        elif len(parents) >= 2 and draw < self.p_random + self.p_crossover:
            operator = "crossover"
        else:
            operator = "mutate"
        context = (
            f"; skipped unparseable parent(s) {', '.join(f'#{i}' for i in skipped)}"
            if skipped
            else ""
        )

        self.stats["proposals"] += 1
        self.stats[f"operator:{operator}"] += 1
        rejected: Counter[str] = Counter()
        for attempt in range(1, self.max_attempts + 1):
            if operator == "crossover" and attempt > self.max_attempts // 2:
                operator = "mutate"  # two parents that will not combine: vary the primary instead
            self.stats["attempts"] += 1
            self.stats[f"attempts:{operator}"] += 1
            child = self._vary(rng, operator, parents)
            reason = "inapplicable" if child is None else self._reject(child, parents)
            code = None
            if reason is None:
                child = self._legible(child, parents)
                code = self.render(child.tree)
                if code.strip() in known_code:
                    reason = "same code"
                elif code in self._proposed:
                    reason = "already proposed"
            if reason is not None:
                rejected[reason] += 1
                self.stats[f"rejected:{reason}"] += 1
                continue
            self.stats["passed"] += 1
            self.stats[f"passed:{operator}"] += 1
            self._remember(code)
            screened = "passed the pre-screen" if self.prescreen else "unscreened"
            tail = (
                f" ({screened} at attempt {attempt}{_summary(rejected, ', rejected: ')}{context})"
            )
            return Proposal(
                code=code,
                operator=operator,
                parent_ids=list(child.parent_ids),
                note=child.note + tail,
            )
        self.stats[Status.NO_CODE] += 1
        return Proposal(
            code=None,
            operator=operator,
            parent_ids=[p.view.id for p in parents[:1]],
            note=f"{operator}: no child passed the pre-screen in {self.max_attempts} attempts"
            f"{_summary(rejected, ' (rejected: ')}{')' if rejected else ''}{context}",
        )

    def _remember(self, code: str, capacity: int = 10_000) -> None:
        self._proposed[code] = None
        if len(self._proposed) > capacity:
            del self._proposed[next(iter(self._proposed))]

    def _reject(self, child: _Child, parents: list[_Parent]) -> str | None:
        tree = child.tree
        # Bloat control: no larger than the limits, or than the largest parent where that is larger.
        if ex.size(tree, self.atoms) > max(
            [self.max_nodes, *(ex.size(t, self.atoms) for t in child.limit_from)]
        ) or ex.depth(tree, self.atoms) > max(
            [self.max_depth, *(ex.depth(t, self.atoms) for t in child.limit_from)]
        ):
            return "too large"
        if not ex.variables(tree) & set(self.inputs):
            return "constant"
        if ex.variables(tree) - set(self.inputs):
            return "placeholder left"  # cannot happen with a well-formed grammar; never render it
        if not self.prescreen:
            return None
        reason = self.screen.reject(tree)
        if reason is None:
            fingerprint = self.screen.fingerprint(tree)
            if any(
                np.allclose(fingerprint, p.fingerprint, rtol=1e-9, atol=1e-12, equal_nan=True)
                for p in parents
            ):
                return "no-op"
        return reason

    # variation ----------------------------------------------------------------------------------

    def _vary(self, rng, operator: str, parents: list[_Parent]) -> _Child | None:
        if operator == "random":
            return self._random(rng)
        if operator == "crossover":
            return self._crossover(rng, parents[0], rng.choice(parents[1:]))
        return self._mutate(rng, parents[0])

    def _random(self, rng) -> _Child | None:
        """A fresh tree, mostly inside a generator wrapper (one without D): raw random trees
        almost never satisfy the validity conditions."""
        generators = {n: w for n, w in self.grammar.wrappers.items() if "D" not in ex.variables(w)}
        if not generators or rng.random() < 0.2:
            tree = ex.ramped_tree(rng, self.grammar, self.max_depth)
            return _Child(self._simplify(tree), f"random: {self.describe(tree)}", ())
        name = rng.choice(list(generators))
        wrapper = generators[name]
        budget = max(1, self.max_depth - _placeholder_depth(wrapper, "X"))
        x = ex.ramped_tree(rng, self.grammar, budget)
        return _Child(
            self._simplify(ex.wrap(wrapper, x=x)), f"random: {name} with X = {self.describe(x)}", ()
        )

    def _crossover(self, rng, a: _Parent, b: _Parent) -> _Child | None:
        ids = (a.view.id, b.view.id)
        if rng.random() < 0.25:
            # Blends keep validity: sums, weighted means and maxima of valid drifts are valid
            # drifts, and likewise for value losses minimal at the target.
            combine = rng.choice(("mean", "sum", "max"))
            if combine == "mean":
                w = round(rng.uniform(0.2, 0.8), 2)
                tree = ex.Op(
                    "add",
                    (
                        ex.Op("mul", (ex.Const(w), a.tree)),
                        ex.Op("mul", (ex.Const(round(1 - w, 2)), b.tree)),
                    ),
                )
                note = f"crossover/blend: {w}*#{a.view.id} + {round(1 - w, 2)}*#{b.view.id}"
            elif combine == "sum":
                tree = ex.Op("add", (a.tree, b.tree))
                note = f"crossover/blend: #{a.view.id} + #{b.view.id}"
            else:
                tree = ex.Op("maximum", (a.tree, b.tree))
                note = f"crossover/blend: max(#{a.view.id}, #{b.view.id})"
            return _Child(self._simplify(tree), note, ids, (a.tree, b.tree))
        receiver, donor = (a, b) if rng.random() < 0.75 else (b, a)
        combine = "subtree"
        if rng.random() < 0.6 and (pair := self._matched_pair(rng, receiver.tree, donor.tree)):
            combine = "matched"
            path, inserted = pair
            tree = ex.replace(receiver.tree, path, inserted)
        else:
            tree, path, inserted = ex.crossover(rng, receiver.tree, donor.tree)
        old = ex.get(receiver.tree, path)
        note = (
            f"crossover/{combine}: in #{receiver.view.id} replaced {self.describe(old)} "
            f"with {self.describe(inserted)} from #{donor.view.id}"
        )
        return _Child(self._simplify(tree), note, ids, (a.tree, b.tree))

    def _matched_pair(
        self, rng, receiver: ex.Node, donor: ex.Node
    ) -> tuple[ex.Path, ex.Node] | None:
        """Semantically matched, size-fair subtree crossover: a subtree of the receiver and a
        different subtree of the donor with the same anchor signature, such that the child
        stays within the size limit."""
        limit = max(self.max_nodes, ex.size(receiver, self.atoms), ex.size(donor, self.atoms))
        total = ex.size(receiver, self.atoms)
        donors = list(dict.fromkeys(n for _, n in ex.walk(donor)))
        pairs = []
        for path, old in ex.walk(receiver):
            room = limit - total + ex.size(old, self.atoms)
            for new in donors:
                if (
                    new != old
                    and ex.size(new, self.atoms) <= room
                    and np.allclose(
                        self._signature(old),
                        self._signature(new),
                        rtol=1e-6,
                        atol=1e-9,
                        equal_nan=True,
                    )
                ):
                    pairs.append((path, new))
        return rng.choice(pairs) if pairs else None

    def _signature(self, tree: ex.Node) -> np.ndarray:
        if tree not in self._signatures:
            if len(self._signatures) > 5_000:
                self._signatures.clear()
            self._signatures[tree] = anchor_signature(self.screen, tree)
        return self._signatures[tree]

    def _mutate(self, rng, parent: _Parent) -> _Child | None:
        mutation = _weighted(rng, MUTATIONS)
        tree, grammar = parent.tree, self.grammar
        ids, limits = (parent.view.id,), (parent.tree,)
        if mutation == "subtree":
            child, path, new = ex.subtree_mutation(rng, tree, grammar, self.max_depth)
            note = (
                f"mutate/subtree: replaced {self.describe(ex.get(tree, path))} "
                f"with {self.describe(new)}"
            )
        elif mutation == "point":
            child, path, new = ex.point_mutation(rng, tree, grammar)
            note = f"mutate/point: {self.describe(ex.get(tree, path))} -> {self.describe(new)}"
        elif mutation == "constant":
            result = ex.perturb_constants(rng, tree, tied=rng.random() < 0.7)
            if result is None:
                return None
            child, old, new = result
            note = f"mutate/constant: {old:.4g} -> {new:.4g}"
        elif mutation == "insert":
            result = ex.insert_mutation(rng, tree, grammar)
            if result is None:
                return None
            child, path, new = result
            note = f"mutate/insert: {self.describe(ex.get(tree, path))} -> {self.describe(new)}"
        elif mutation == "shrink":
            result = ex.shrink_mutation(rng, tree)
            if result is None:
                return None
            child, path, new = result
            note = f"mutate/shrink: {self.describe(ex.get(tree, path))} -> {self.describe(new)}"
        else:
            return self._wrap(rng, parent)
        return _Child(self._simplify(child), note, ids, limits)

    def _wrap(self, rng, parent: _Parent) -> _Child | None:
        """A validity-preserving wrapper around the parent (D) or one of its subtrees (X)."""
        if not self.grammar.wrappers:
            return None
        name = rng.choice(list(self.grammar.wrappers))
        wrapper = self.grammar.wrappers[name]
        if "D" in ex.variables(wrapper):
            x = (
                ex.ramped_tree(rng, self.grammar, 2)
                if rng.random() < 0.6
                else ex.get(parent.tree, ex.pick_path(rng, parent.tree))
            )
            tree = ex.wrap(wrapper, x=x, d=parent.tree)
            note = f"mutate/wrap: {name} with D = #{parent.view.id}, X = {self.describe(x)}"
        else:
            x = (
                parent.tree
                if rng.random() < 0.5
                else ex.get(parent.tree, ex.pick_path(rng, parent.tree))
            )
            tree = ex.wrap(wrapper, x=x)
            note = f"mutate/wrap: {name} with X = {self.describe(x)}"
        return _Child(self._simplify(tree), note, (parent.view.id,), (parent.tree,))


def _weighted(rng, options: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in options)
    u = rng.random() * total
    for name, weight in options:
        u -= weight
        if u < 0:
            return name
    return options[-1][0]


def _placeholder_depth(wrapper: ex.Node, name: str) -> int:
    """How many operator levels of the wrapper sit above its placeholder."""
    paths = [p for p, n in ex.walk(wrapper) if n == ex.Var(name)]
    return max((len(p) for p in paths), default=0)


def _summary(counts: Counter[str], prefix: str) -> str:
    return prefix + ", ".join(f"{k} {v}" for k, v in counts.most_common()) if counts else ""
