"""The static checks under Hypothesis: any text, mutations of the tasks' valid baselines,
small generated programs and absurdly nested ones. Whatever the source, the checker answers
with a list of violations (each naming a line) in bounded time, never with an exception."""

import ast
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.checks.pipeline import static_check
from sandbox.checks.static import (
    MAX_AST_DEPTH,
    MAX_SOURCE_BYTES,
    StaticViolation,
    check_source,
    unreachable_module_attributes,
)
from sandbox.tasks import TASKS_DIR

# Fuzzed sources may hold invalid escapes or call a literal: warnings, not violations.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")
SECONDS = 5.0  # per source: checks of a 20 KB source take milliseconds
FUZZ = settings(max_examples=100, deadline=None, derandomize=True)
BASELINES = sorted(p.read_text() for p in TASKS_DIR.glob("*/baselines/*.py"))

# Pieces of Python, honest and hostile, that mutations splice into valid candidates.
SNIPPETS = (
    "import os",
    "from jax import config",
    "__import__('os').system('true')",
    "getattr(jnp, 'lo' + 'ad')",
    "().__class__.__mro__[1].__subclasses__()",
    "(lambda: 0).__globals__",
    "jax.pure_callback",
    "jnp.load('x')",
    "open('/etc/passwd')",
    "eval('1')",
    "f'{ratio!r}'",
    "'%s' % ratio",
    "try:\n    pass\nexcept:\n    pass",
    "while True:\n    pass",
    "class A: pass",
    "global x",
    "yield 1",
    "async def f(): await g()",
    "x = [1, 2]",
    "def drift(ratio, advantage):\n    return ratio",
    "return",
    "-" * 300 + "ratio",
    "(" * 250,
    ")",
    ":",
    "\t",
    "\\",
    '"""',
    "\x00",
    "\ufeff",
    "é = 1",
)
NAMES = ("ratio", "advantage", "jnp", "jax", "math", "x", "__class__", "eval", "os", "_private")


def judged(source: str) -> list[StaticViolation]:
    """check_source's answer, checked for shape and time."""
    started = time.perf_counter()
    violations = check_source(source)
    assert time.perf_counter() - started < SECONDS
    assert isinstance(violations, list)
    for violation in violations:
        assert isinstance(violation, StaticViolation) and violation.message
        assert isinstance(violation.line, int) and violation.line >= 1
    result = static_check(source)  # the pipeline's stage agrees
    assert result.passed == (not violations)
    if not violations:
        try:  # accepted: it compiles, or the loader refuses it as it does any SyntaxError
            compile(source, "candidate.py", "exec")
        except SyntaxError:
            pass
    return violations


@pytest.fixture(scope="module", autouse=True)
def walked_modules():
    unreachable_module_attributes()  # built once (it walks jax), not inside a timed example


@FUZZ
@given(source=st.text(max_size=2_000))
def test_any_text_is_judged(source):
    judged(source)


@FUZZ
@given(source=st.binary(max_size=2_000).map(lambda b: b.decode("utf-8", errors="surrogateescape")))
def test_any_bytes_are_judged(source):
    judged(source)


def mutate(source: str, edits: list[tuple[str, int, int, str]]) -> str:
    """Apply (kind, position, length, text) edits: delete, insert, replace or repeat a span."""
    for kind, position, length, text in edits:
        at = position % (len(source) + 1)
        end = min(len(source), at + length)
        if kind == "delete":
            source = source[:at] + source[end:]
        elif kind == "insert":
            source = source[:at] + text + source[at:]
        elif kind == "replace":
            source = source[:at] + text + source[end:]
        else:  # repeat
            source = source[:end] + source[at:end] + source[end:]
    return source


edits = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "replace", "repeat"]),
        st.integers(0, 5_000),
        st.integers(0, 200),
        st.sampled_from(SNIPPETS) | st.sampled_from(NAMES) | st.text(max_size=20),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(base=st.sampled_from(BASELINES), changes=edits)
def test_mutated_baselines_are_judged(base, changes):
    judged(mutate(base, changes))


def test_the_baselines_themselves_pass():
    assert all(judged(base) == [] for base in BASELINES)


# -- small generated programs ------------------------------------------------------------------

atoms = (
    st.sampled_from(NAMES)
    | st.integers(-(10**30), 10**30).map(str)
    | st.sampled_from(["1.5", "1e308", "'text'", "'__x__'", "None", "True", "..."])
)


def compound(inner):
    return (
        st.tuples(
            inner, st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "@", "<", "=="]), inner
        ).map(" ".join)
        | inner.map(lambda e: f"-({e})")
        | inner.map(lambda e: f"not {e}")
        | st.tuples(inner, st.sampled_from(NAMES + ("where", "square"))).map(
            lambda p: f"({p[0]}).{p[1]}"
        )
        | st.tuples(inner, st.lists(inner, max_size=3)).map(
            lambda p: f"({p[0]})({', '.join(p[1])})"
        )
        | st.tuples(inner, inner).map(lambda p: f"({p[0]})[{p[1]}]")
        | inner.map(lambda e: f"(lambda ratio: {e})")
        | st.tuples(inner, inner, inner).map(lambda p: f"({p[0]} if {p[1]} else {p[2]})")
        | st.lists(inner, max_size=3).map(lambda es: f"[{', '.join(es)}]")
    )


expressions = st.recursive(atoms, compound, max_leaves=12)
statements = (
    expressions.map(lambda e: f"return {e}")
    | st.tuples(st.sampled_from(NAMES), expressions).map(lambda p: f"{p[0]} = {p[1]}")
    | st.tuples(expressions, expressions).map(lambda p: f"if {p[0]}:\n        return {p[1]}")
    | expressions.map(lambda e: f"for i in range(3):\n        ratio = {e}")
    | st.sampled_from(SNIPPETS[:12])
)
programs = st.tuples(
    st.lists(st.sampled_from(["import jax.numpy as jnp", "import math", "import os"]), max_size=2),
    st.lists(statements, min_size=1, max_size=5),
).map(
    lambda p: (
        "\n".join(p[0])
        + "\n\ndef drift(ratio, advantage):\n"
        + "\n".join("    " + s for s in p[1])
        + "\n"
    )
)


@FUZZ
@given(source=programs)
def test_generated_programs_are_judged(source):
    judged(source)


# -- nesting ---------------------------------------------------------------------------------------

# (before, after) around `ratio`, repeated: chains that each parse but nest the tree deeply
CHAINS = (
    ("-", ""),
    ("not ", ""),
    ("~", ""),
    ("", ".real"),
    ("", "[0]"),
    ("", "()"),
    ("(", ")"),
    ("[", "]"),
    ("f(", ")"),
    ("lambda: ", ""),
    ("ratio + ", ""),
    ("ratio if ratio else ", ""),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(chain=st.sampled_from(CHAINS), depth=st.integers(1, 3_000))
def test_nesting_of_any_depth_is_judged(chain, depth):
    before, after = chain
    source = "x = " + before * depth + "ratio" + after * depth + "\n"
    if len(source.encode()) > MAX_SOURCE_BYTES:
        return
    violations = judged(source)
    tree_too_deep = depth > MAX_AST_DEPTH
    if tree_too_deep and not violations:
        pytest.fail(f"{depth} levels of {chain} passed the checks")


def test_a_deep_chain_is_refused_on_its_line():
    (violation,) = check_source("y = 1\nx = " + "-" * 1_000 + "ratio\n")
    assert violation.line == 2 and f"the limit is {MAX_AST_DEPTH}" in violation.message


def test_honest_candidates_stay_far_below_the_depth_limit():
    def depth(node, level=1):
        return max([level] + [depth(child, level + 1) for child in ast.iter_child_nodes(node)])

    assert max(depth(ast.parse(base)) for base in BASELINES) < MAX_AST_DEPTH // 4
