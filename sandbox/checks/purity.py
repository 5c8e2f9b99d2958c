"""No state between calls and no way to tell the caller apart: a candidate is a pure
function of its inputs' values.

A function that keeps state from one call to the next (a counter in a module-level list, a
mutable default argument, an iterator consumed a step per call, a cache's statistics) can
behave one way for the calls the checks make and another for the calls training makes,
whatever the checks look at. The static check refuses every way this grammar offers to keep
such state: the only mutable objects a candidate could build are Python lists, dicts, sets
and iterators (its allowed imports give immutable arrays), so

- module level binds no mutable object (a display or comprehension only as an argument of
  a call, as in `jnp.array([...])`; no list/dict/set/iterator factories), and defaults of
  arguments are constants;
- nothing is mutated in place: no item assignment or deletion anywhere, no mutating method
  (`append`, `pop`, ...) except on a list/dict/set the same function built, no augmented
  assignment of a name bound to something from outside the function;
- no caches (`functools.cache` and kin keep results, and their statistics, across calls).

Nor may it tell how it is called apart from what it is called with. Training calls a piece
under jit, inside a gradient, vmapped over seeds; the checks call it in other ways. What a
traced array reveals of that (its text, `JitTracer(...)` against `GradTracer(...)` against
the printed values; attributes only one kind of tracer has, probed under `try`) is closed:
no `try`, and no conversion of a value to text (`str`, `repr`, `ascii`, `format`,
f-strings with fields, `%` on a string), nor `id` and `hash`.

Attribute assignment, `global` and `nonlocal` are refused by the static check already.
"""

import ast
import functools
import types
from collections.abc import Callable, Iterator

# Methods that change a list, dict or set in place (names that jax arrays or optax also use,
# such as update, add or sort, return new values there and are left out).
MUTATING_METHODS = frozenset(
    {
        "append",
        "pop",
        "remove",
        "clear",
        "setdefault",
        "popitem",
        "discard",
        "reverse",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
    }
)
MUTABLE_FACTORIES = frozenset(
    {"list", "dict", "set", "bytearray", "iter", "map", "filter", "zip", "enumerate", "reversed"}
)
# Caches keep results (and their statistics) across calls; next() steps an iterator kept.
STATEFUL = frozenset({"cache", "lru_cache", "cached_property", "next"})
# Builtins that show how an array was made (its text, its identity) rather than its values.
TELLS = frozenset({"str", "repr", "ascii", "format", "id", "hash"})
TELL = "a candidate may not tell how it is called apart from its inputs' values"
DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)
WHY = "a candidate keeps no state between calls"

Flag = Callable[[ast.AST, str], None]


def check_purity(tree: ast.Module, flag: Flag) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            flag(node, f"item assignment or deletion is not allowed ({WHY}; use x.at[i].set)")
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
        if isinstance(node, ast.alias):
            name = node.asname or node.name
        if name in STATEFUL:
            flag(node, f"{name!r} is not allowed ({WHY})")
        if isinstance(node, ast.Name) and node.id in TELLS:
            flag(node, f"{node.id!r} is not allowed ({TELL})")
        if isinstance(node, (ast.Try, ast.TryStar)):
            flag(node, f"try statements are not allowed ({TELL}, e.g. by probing attributes)")
        if isinstance(node, ast.FormattedValue) or (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            flag(node, f"formatting values as text is not allowed ({TELL})")
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None and not _constant(default):
                    flag(default, f"argument defaults must be constants ({WHY})")
            if isinstance(node, ast.FunctionDef):
                _check_function(node, flag)
    for statement in tree.body:
        if not isinstance(statement, (ast.FunctionDef, ast.Import, ast.ImportFrom)):
            _check_module_level(statement, flag)


def _constant(node: ast.AST) -> bool:
    if isinstance(node, (ast.Constant, ast.Name, ast.Attribute)):
        return True
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand)
    return isinstance(node, ast.Tuple) and all(_constant(e) for e in node.elts)


def _check_module_level(statement: ast.stmt, flag: Flag) -> None:
    """Module level binds no mutable object: displays only inside a call's arguments."""

    def visit(node: ast.AST, in_call: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            return  # their bodies run per call: checked as functions
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in MUTABLE_FACTORIES:
                flag(node, f"{node.func.id}() at module level is not allowed ({WHY})")
            visit(node.func, in_call)
            for child in [*node.args, *(k.value for k in node.keywords)]:
                visit(child, True)
            return
        if isinstance(node, DISPLAYS) and not in_call:
            flag(node, f"a list, dict or set at module level is not allowed ({WHY})")
        for child in ast.iter_child_nodes(node):
            visit(child, in_call)

    visit(statement, False)


def _check_function(function: ast.FunctionDef, flag: Flag) -> None:
    """In place, a function mutates only lists, dicts and sets it built itself."""
    nodes = list(_own_nodes(function))
    built, outside = set(), set()  # names bound to a display here / to anything else here
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in _names(target):
                    (built if isinstance(node.value, DISPLAYS) else outside).add(name)
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            for name in _names(node.target):
                (built if isinstance(node.value, DISPLAYS) else outside).add(name)
        elif isinstance(node, (ast.For, ast.comprehension, ast.With)):
            targets = [node.target] if not isinstance(node, ast.With) else []
            targets += [i.optional_vars for i in getattr(node, "items", []) if i.optional_vars]
            for target in targets:
                outside.update(_names(target))
    local = built - outside
    parameters = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    assigned = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in nodes:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATING_METHODS
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id in local)
        ):
            flag(node, f"calling .{node.func.attr}() here is not allowed ({WHY})")
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            aliased = _aliases(nodes, node.target.id, parameters | assigned)
            if aliased:
                flag(
                    node,
                    f"augmented assignment to {node.target.id!r}, bound to {aliased}, is not "
                    f"allowed ({WHY})",
                )


def _own_nodes(function: ast.FunctionDef):
    """The nodes of `function`'s body, not those of functions defined in it (each of those
    is checked on its own; lambdas are part of the body)."""
    stack = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef):
            stack.extend(ast.iter_child_nodes(node))


def _aliases(nodes: list[ast.AST], name: str, bound_here: set[str]) -> str:
    """What `name` is bound to among a function's `nodes` that may be an object from outside
    it (a name not bound in the function, `bound_here`, or an attribute), in words; '' if
    nothing is."""
    for node in nodes:
        if isinstance(node, ast.Assign) and any(name in _names(t) for t in node.targets):
            value = node.value
            if isinstance(value, ast.Attribute):
                return "an attribute"
            if isinstance(value, ast.Name) and value.id not in bound_here:
                return f"{value.id!r} from outside the function"
    return ""


def _names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


# -- after loading: what the module's objects hold ----------------------------------------------
# The rules above leave a loaded module no way to build a mutable object that lives between
# calls, except through library calls that hand back what they were given (an identity
# lambda applied to a set, `jax.tree.map` over a list) or a closure over a container its
# factory built. What the module actually holds is checked too, once it has run.

MUTABLE_TYPES = (list, dict, set, bytearray, Iterator)


def mutable_state(namespace: dict) -> str | None:
    """The first module-level object through which a loaded candidate could keep state
    between calls, in words; None when there is none. Follows tuples, frozensets,
    `functools.partial` arguments, and the defaults and closure cells of the candidate's own
    functions (those whose globals are `namespace`)."""
    seen: set[int] = set()

    def find(value, where: str) -> str | None:
        if id(value) in seen:
            return None
        seen.add(id(value))
        if isinstance(value, MUTABLE_TYPES):
            return f"{where} is a {type(value).__name__}"
        children: list[tuple[str, object]] = []
        if isinstance(value, (tuple, frozenset)):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, functools.partial):
            children = [(f"{where}'s argument", v) for v in value.args]
            children += [(f"{where}'s argument {k}", v) for k, v in value.keywords.items()]
            children.append((f"{where}'s function", value.func))
        elif isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            children = [(f"a default of {where}", v) for v in value.__defaults__ or ()]
            children += [
                (f"a default of {where}", v) for v in (value.__kwdefaults__ or {}).values()
            ]
            for cell in value.__closure__ or ():
                try:
                    children.append((f"a variable {where} closes over", cell.cell_contents))
                except ValueError:  # an empty cell
                    pass
        for child_where, child in children:
            found = find(child, child_where)
            if found:
                return found
        return None

    for name, value in namespace.items():
        if not name.startswith("__") and not isinstance(value, types.ModuleType):
            found = find(value, repr(name))
            if found:
                return f"{found} ({WHY})"
    return None
