"""Static checks of candidate source, run before any candidate code executes.

The rules are deliberately stricter than any honest candidate needs: a drift, a value loss
or an optimizer is a few lines of jax.numpy, so anything that reaches for the interpreter,
the file system, the host or another module's internals is refused. Every refusal names
the offending line.
"""

import ast
import functools
import importlib
import types
from dataclasses import dataclass

from sandbox.checks.purity import check_purity

MAX_SOURCE_BYTES = 20_000
MAX_AST_NODES = 5_000
# Syntax nesting: honest candidates stay near 10, and the checks' recursive walks (purity)
# must stay far below Python's recursion limit (`- - - ... x` 1,000 deep broke them).
MAX_AST_DEPTH = 100

ALLOWED_IMPORTS = frozenset(
    {"jax", "jax.numpy", "jax.nn", "jax.lax", "optax", "math", "functools", "typing"}
)

# Builtins that reach the interpreter, the file system or arbitrary attributes by name.
FORBIDDEN_NAMES = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "globals",
        "vars",
        "locals",
        "dir",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "print",
        "super",
        "type",
        "object",
        "classmethod",
        "staticmethod",
        "property",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)

# Attribute names no candidate needs, on any object: host callbacks and side channels of
# jax, file I/O of jax.numpy, string formatting that walks attributes, and lazy evaluation
# of annotation strings in typing.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "pure_callback",
        "io_callback",
        "callback",
        "debug",
        "experimental",
        "host_callback",
        "config",
        "profiler",
        "distributed",
        "monitoring",
        "ffi",
        "extend",
        "dlpack",
        "infeed",
        "outfeed",
        "effects_barrier",
        "clear_caches",
        "device_put",
        "device_get",
        "load",
        "save",
        "savez",
        "savez_compressed",
        "fromfile",
        "tofile",
        "loadtxt",
        "savetxt",
        "genfromtxt",
        "memmap",
        "format",
        "format_map",
        "get_type_hints",
        "ForwardRef",
        "evaluate_forward_ref",
        "modules",
        "system",
        "environ",
        "live_arrays",
        "live_buffers",
        "make_array_from_callback",
        "backends",
        "clear_backends",
        # Process-wide registries: candidates of a batch share a process.
        "register_pytree_node",
        "register_pytree_node_class",
        "register_pytree_with_keys",
        "register_pytree_with_keys_class",
        "register_static",
        "register_dataclass",
        "set_printoptions",
        # Derivatives of the candidate's own making: training, the slope checks and the
        # certificate all reason about the derivative autodiff computes from the values.
        "custom_jvp",
        "custom_vjp",
        "custom_gradient",
        "defjvp",
        "defjvps",
        "defvjp",
        "stop_gradient",
    }
)

# Frame, code, generator and traceback introspection (e.g. gen.gi_frame.f_globals).
FORBIDDEN_ATTRIBUTE_PREFIXES = ("f_", "gi_", "co_", "cr_", "ag_", "tb_", "func_")

# Modules a candidate may reach through attributes of its imports (jax.random.normal,
# jax.scipy.special.erf, optax.schedules...). Any other module reachable that way
# (typing.sys, some jax module's os or subprocess) is cut off by attribute name.
REACHABLE_MODULE_PREFIXES = (
    "jax.numpy",
    "jax.nn",
    "jax.lax",
    "jax.random",
    "jax.tree",
    "jax.tree_util",
    "jax.scipy",
    "jax.dtypes",
    "jax.errors",
    "jax.typing",
    "jax.image",
    "jax.ops",
    "optax",
    "math",
    "functools",
    "typing",
)

FORBIDDEN_STATEMENTS = {
    ast.ClassDef: "class definitions",
    ast.Global: "global statements",
    ast.Nonlocal: "nonlocal statements",
    ast.AsyncFunctionDef: "async functions",
    ast.Await: "await",
    ast.AsyncFor: "async loops",
    ast.AsyncWith: "async with",
    ast.Yield: "generators",
    ast.YieldFrom: "generators",
}


@dataclass(frozen=True)
class StaticViolation:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _is_private(name: str) -> bool:
    return name.startswith("_")


def _import_allowed(module: str) -> bool:
    return module in ALLOWED_IMPORTS


def _reachable(module_name: str) -> bool:
    return module_name == "jax" or any(
        module_name == prefix or module_name.startswith(prefix + ".")
        for prefix in REACHABLE_MODULE_PREFIXES
    )


@functools.cache
def unreachable_module_attributes() -> frozenset[str]:
    """Attribute names under which the allowed modules expose modules a candidate must not
    reach, found by walking the installed packages (so it follows their versions)."""
    names, seen = set(), set()

    def walk(module, depth):
        if module.__name__ in seen:
            return
        seen.add(module.__name__)
        for name in dir(module):
            if _is_private(name):
                continue
            try:
                value = getattr(module, name)
            except Exception:  # lazy attributes may fail to import; not reachable then
                continue
            if not isinstance(value, types.ModuleType):
                continue
            if not _reachable(value.__name__):
                names.add(name)
            elif depth < 4:
                walk(value, depth + 1)

    for module_name in sorted(ALLOWED_IMPORTS):
        walk(importlib.import_module(module_name), 0)
    return frozenset(names)


def _deepest(tree: ast.AST) -> tuple[int, int]:
    """The syntax tree's deepest nesting and the line it is on, found without recursion."""
    deepest, stack = (0, 1), [(1, tree, 1)]
    while stack:
        depth, node, line = stack.pop()
        line = getattr(node, "lineno", line)  # contexts (Load, Store) have no line of their own
        deepest = max(deepest, (depth, line), key=lambda pair: pair[0])
        stack.extend((depth + 1, child, line) for child in ast.iter_child_nodes(node))
    return deepest


MAX_INT_LITERAL = 2**64  # in magnitude; no constant of a drift, loss or optimizer needs more


def _oversized_numbers(nodes: list[ast.AST]) -> list[StaticViolation]:
    """Numeric literals beyond float64 (a 400-digit integer, 1e400 read as inf): refused
    here, by line, rather than met by the trusted side's parsers and formatters."""
    found = []
    for node in nodes:
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT_LITERAL:
                message = f"integer literal of {value.bit_length()} bits; the limit is 2**64"
                found.append(StaticViolation(node.lineno, message))
        elif isinstance(value, (float, complex)) and float("inf") in (
            abs(value.real),
            abs(value.imag),
        ):
            found.append(StaticViolation(node.lineno, "numeric literal beyond float64 (inf)"))
    return found


# Routes to XLA's compiler and JAX's settings, which no candidate needs. Compiler options
# reach XLA's debug flags (`xla_dump_to` writes files wherever it is told, at load time
# too): refused as a keyword, through `**` (which could spell any keyword) and through
# ahead-of-time lowering, whose `.compile()` takes them positionally. Settings have names
# starting xla_ or jax_, refused wherever a string or keyword spells one. numpy scalars
# (jnp.finfo(...).eps is one) pickle themselves to a file with `.dump`.
COMPILER_KEYWORDS = frozenset({"compiler_options"})
AHEAD_OF_TIME = "ahead-of-time compiling takes XLA compiler options"
COMPILER_ATTRIBUTES = {
    "lower": AHEAD_OF_TIME,
    "compile": AHEAD_OF_TIME,
    "trace": AHEAD_OF_TIME + "; for a matrix trace use jnp.diagonal(x).sum()",
    "dump": "it writes a file",
}
SETTING_PREFIXES = ("xla_", "jax_")


@functools.cache
def setting_attributes() -> frozenset[str]:
    """JAX's process-wide settings exposed on `jax` itself (jax.log_compiles,
    jax.enable_x64, jax.default_device...), found in the installed version."""
    import jax

    return frozenset(
        name
        for name in dir(jax)
        if not _is_private(name)
        and type(getattr(jax, name, None)).__module__.startswith("jax._src.config")
    )


def _names_setting(text: str) -> bool:
    return text.lstrip("-").lower().startswith(SETTING_PREFIXES)


def _compiler_routes(nodes: list[ast.AST]) -> list[StaticViolation]:
    """Compiler options, ahead-of-time compiling and JAX's settings, each by line."""
    found = []

    def flag(node, message):
        found.append(StaticViolation(getattr(node, "lineno", 1), message))

    for node in nodes:
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg is None:
                    flag(keyword, "'**' unpacking of keyword arguments is not allowed")
                elif keyword.arg in COMPILER_KEYWORDS:
                    flag(keyword, f"keyword {keyword.arg!r} is not allowed (XLA compiler options)")
                elif _names_setting(keyword.arg):
                    flag(keyword, f"keyword {keyword.arg!r} names an XLA or JAX setting")
        elif isinstance(node, ast.Attribute):
            if node.attr in COMPILER_ATTRIBUTES:
                why = COMPILER_ATTRIBUTES[node.attr]
                flag(node, f"attribute {node.attr!r} is not allowed ({why})")
            elif node.attr in setting_attributes():
                flag(node, f"attribute {node.attr!r} changes JAX's settings")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _names_setting(node.value):
                flag(node, f"string {node.value[:40]!r} names an XLA or JAX setting")
    return found


def check_source(source: str) -> list[StaticViolation]:
    """All violations in `source`; an empty list means the source may be loaded."""
    size = len(source.encode("utf-8", errors="replace"))
    if size > MAX_SOURCE_BYTES:
        return [StaticViolation(1, f"source is {size} bytes; the limit is {MAX_SOURCE_BYTES}")]
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [StaticViolation(error.lineno or 1, f"syntax error: {error.msg}")]
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return [StaticViolation(1, f"unparsable source: {type(error).__name__}: {error}")]
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_AST_NODES:
        return [
            StaticViolation(
                1, f"source has {len(nodes)} syntax nodes; the limit is {MAX_AST_NODES}"
            )
        ]
    depth, line = _deepest(tree)
    if depth > MAX_AST_DEPTH:
        return [StaticViolation(line, f"syntax nested {depth} deep; the limit is {MAX_AST_DEPTH}")]

    violations = []

    def flag(node, message):
        violations.append(StaticViolation(getattr(node, "lineno", 1), message))

    for node in nodes:
        for kind, label in FORBIDDEN_STATEMENTS.items():
            if isinstance(node, kind):
                flag(node, f"{label} are not allowed in a candidate")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _import_allowed(alias.name):
                    flag(
                        node,
                        f"import of {alias.name!r} is not allowed; allowed: "
                        f"{', '.join(sorted(ALLOWED_IMPORTS))}",
                    )
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or not _import_allowed(module):
                flag(
                    node,
                    f"import from {'.' * node.level + module!r} is not allowed; allowed: "
                    f"{', '.join(sorted(ALLOWED_IMPORTS))}",
                )
                continue
            for alias in node.names:
                name = alias.name
                if name == "*":
                    flag(node, "star imports are not allowed")
                elif (
                    _is_private(name)
                    or name in FORBIDDEN_ATTRIBUTES
                    or name in FORBIDDEN_NAMES
                    or name in unreachable_module_attributes()
                ):
                    flag(node, f"importing {name!r} from {module} is not allowed")
                elif f"{module}.{name}" not in ALLOWED_IMPORTS and isinstance(
                    getattr(importlib.import_module(module), name, None), types.ModuleType
                ):
                    flag(
                        node,
                        f"module {module}.{name} is not allowed; import one of "
                        f"{', '.join(sorted(ALLOWED_IMPORTS))}",
                    )
        elif isinstance(node, ast.Attribute):
            if _is_private(node.attr):
                flag(node, f"access to private or dunder attribute {node.attr!r} is not allowed")
            elif node.attr in FORBIDDEN_ATTRIBUTES or node.attr.startswith(
                FORBIDDEN_ATTRIBUTE_PREFIXES
            ):
                flag(node, f"attribute {node.attr!r} is not allowed in a candidate")
            elif node.attr in unreachable_module_attributes():
                flag(node, f"attribute {node.attr!r} leads to a module a candidate may not use")
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                flag(
                    node,
                    f"assigning or deleting attribute {node.attr!r} is not allowed "
                    "(no patching of modules or objects)",
                )
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                flag(node, f"use of {node.id!r} is not allowed in a candidate")
            elif node.id.startswith("__"):
                flag(node, f"use of dunder name {node.id!r} is not allowed")
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            name = getattr(node, "name", "")
            if name.startswith("__"):
                flag(node, f"dunder function name {name!r} is not allowed")
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and arg.arg.startswith("__"):
                    flag(node, f"dunder argument name {arg.arg!r} is not allowed")
        elif isinstance(node, (ast.alias,)) and node.asname and node.asname.startswith("__"):
            flag(node, f"dunder alias {node.asname!r} is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
            # Dunder strings only serve introspection tricks (e.g. via a format spec).
            flag(node, "string constants containing '__' are not allowed")
        elif isinstance(node, ast.Try) and any(h.type is None for h in node.handlers):
            flag(node, "bare 'except:' is not allowed (it would swallow timeouts and exits)")
    violations.extend(_oversized_numbers(nodes))
    violations.extend(_compiler_routes(nodes))
    check_purity(tree, flag)
    violations.sort(key=lambda v: v.line)
    return violations
