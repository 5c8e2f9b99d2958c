"""The layout's rules, read from the source (no imports): each top-level package imports only
the layers below it (nothing inside the sandbox imports the trusted side); SQL and database
sessions only in `archive/`; no import cycles among the project's modules, counting imports
inside functions and package `__init__`s; no function over 150 lines outside migrations."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("archive", "sandbox", "harness", "scientist", "benchmarks")
# What each top-level package may import from the project: the sandbox's side of the
# boundary nothing outside itself; the trusted side around it and the archive the sandbox's
# shared vocabulary; the orchestration all of them.
MAY_IMPORT = {
    "sandbox": {"sandbox"},
    "harness": {"harness", "sandbox"},
    "archive": {"archive", "sandbox"},
    "scientist": {"scientist", "archive", "harness", "sandbox"},
    "benchmarks": set(PACKAGES),
}
LONGEST = 150


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> set[str]:
    """Every name an import statement in the module names, absolute."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports; importing a.b.c runs a and a.b too."""

    def resolve(name):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in MODULES.items():
        edges = set()
        for name in _imported(module, path):
            target = resolve(name)
            if not target:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in MODULES and step != module and not module.startswith(step + "."):
                    edges.add(step)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = counter[0]
                    counter[0] += 1
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_packages_import_only_the_layers_below():
    graph = _graph()
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    )
    assert upward == []


def test_sql_and_sessions_only_in_the_archive():
    outside = [
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if not module.startswith("archive")
        for name in _imported(module, path)
        if name.split(".")[0] in ("sqlalchemy", "sqlmodel", "alembic", "psycopg")
    ]
    assert outside == []


def test_no_function_over_150_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > LONGEST
    ]
    assert long == []
