"""Static checks refuse anything that could leave the candidate's box, naming the line."""

import pytest

from sandbox.candidate import CandidateLoadError, load_entry_point
from sandbox.checks.static import MAX_SOURCE_BYTES, check_source

OK_HEADER = "import jax\nimport jax.numpy as jnp\n"

HOSTILE = {
    "os import": ("import os\n", 1, "import of 'os'"),
    "subprocess from-import": ("from subprocess import run\n", 1, "import from 'subprocess'"),
    "relative import": ("from . import secrets\n", 1, "import from"),
    "jax submodule outside allowlist": ("from jax import experimental\n", 1, "experimental"),
    "jax.random module import": ("from jax import random\n", 1, "jax.random"),
    "star import": ("from jax.numpy import *\n", 1, "star imports"),
    "dunder import": ("m = __import__('os')\n", 1, "__import__"),
    "eval": (OK_HEADER + "x = eval('1+1')\n", 3, "'eval'"),
    "exec": (OK_HEADER + "exec('import os')\n", 3, "'exec'"),
    "open file": (
        OK_HEADER + "def drift(r, a):\n    open('/tmp/x', 'w').write('1')\n    return r\n",
        4,
        "'open'",
    ),
    "getattr string": (OK_HEADER + "f = getattr(jnp, 'lo' + 'ad')\n", 3, "'getattr'"),
    "subclass walk": ("x = ().__class__.__bases__[0].__subclasses__()\n", 1, "__class__"),
    "globals": ("g = globals()\n", 1, "'globals'"),
    "monkeypatch jax": (
        OK_HEADER + "jnp.sum = lambda *a: 0\n",
        3,
        "assigning or deleting attribute 'sum'",
    ),
    "delete attribute": (OK_HEADER + "del jnp.mean\n", 3, "'mean'"),
    "augmented patch": (OK_HEADER + "jax.numpy.e += 1\n", 3, "assigning"),
    "pure callback": (
        OK_HEADER + "def drift(r, a):\n    return jax.pure_callback(lambda x: x, r, r)\n",
        4,
        "pure_callback",
    ),
    "debug callback": (
        OK_HEADER + "def drift(r, a):\n    jax.debug.print('{}', r)\n    return r\n",
        4,
        "debug",
    ),
    "module reachable via typing": ("import typing\ntyping.sys.exit(0)\n", 2, "'sys'"),
    "file io via jnp": (OK_HEADER + "x = jnp.load('/etc/passwd')\n", 3, "'load'"),
    "frame walk": (
        "def f():\n    g = (i for i in [1])\n    return g.gi_frame.f_back\n",
        3,
        "gi_frame",
    ),
    "format attribute walk": ("s = '{0.x}'.format(1)\n", 1, "'format'"),
    "dunder string": ("s = 'a__b'\n", 1, "'__'"),
    "private attribute": (OK_HEADER + "x = jax._src\n", 3, "_src"),
    "class definition": ("class A:\n    pass\n", 1, "class definitions"),
    "global statement": ("def f():\n    global X\n    X = 1\n", 2, "global"),
    "print": ("print('FITNESS 1e9')\n", 1, "'print'"),
    "bare except": ("try:\n    x = 1\nexcept:\n    pass\n", 1, "bare 'except:'"),
    "syntax error": ("def drift(r, a)\n    return r\n", 1, "syntax error"),
    "type() introspection": ("t = type(1)\n", 1, "'type'"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_source_is_rejected_with_its_line(name):
    source, line, fragment = HOSTILE[name]
    violations = check_source(source)
    assert violations, name
    assert any(v.line == line and fragment in v.message for v in violations), [
        str(v) for v in violations
    ]


BASE_DRIFT = (
    OK_HEADER
    + "\n\ndef drift(ratio, advantage):\n"
    + "    base = jnp.abs(advantage) * (ratio - 1.0 - jnp.log(ratio))\n"
)

# Ways to keep state from one call to the next, so that the calls the checks make and the
# calls training makes see different functions (sandbox/checks/purity.py).
STATEFUL = {
    "counter in a module-level list": (
        OK_HEADER + "CALLS = [0]\n\ndef drift(r, a):\n    CALLS[0] += 1\n"
        "    return (r - 1.0) ** 2 - 0.1 * (CALLS[0] > 40)\n",
        3,
        "module level",
    ),
    "item assignment": (
        OK_HEADER + "def drift(r, a, s=None):\n    s[0] = 1\n    return r\n",
        4,
        "item",
    ),
    "mutable default": (
        OK_HEADER + "def drift(r, a, seen=[]):\n    return r * len(seen)\n",
        3,
        "defaults",
    ),
    "append to a module-level object": (
        OK_HEADER + "def drift(r, a):\n    jnp.some_list.append(1)\n    return r\n",
        4,
        ".append()",
    ),
    "iterator stepped per call": (
        OK_HEADER + "STEPS = iter(range(100))\n\ndef drift(r, a):\n    return r * next(STEPS)\n",
        3,
        "iter()",
    ),
    "cache statistics": (
        "import functools\n\n@functools.lru_cache\ndef f(n):\n    return n\n",
        3,
        "'lru_cache'",
    ),
    "in-place add through an alias": (
        OK_HEADER + "def drift(r, a):\n    seen = jnp.some_list\n    seen += [1]\n    return r\n",
        5,
        "augmented assignment",
    ),
}


# Ways to tell the calls training makes (jit, inside a gradient, vmapped over seeds) from the
# calls the checks make by how the arrays were made rather than their values.
TELLS = {
    "text of a tracer": (
        BASE_DRIFT + "    if 'GradTracer' in str(ratio):\n        return base - 0.1\n"
        "    return base\n",
        7,
        "'str'",
    ),
    "f-string of a tracer": (
        BASE_DRIFT + "    return base - 0.1 * ('Batch' in f'{ratio}')\n",
        7,
        "formatting",
    ),
    "percent formatting": (
        BASE_DRIFT + "    return base - 0.1 * ('Jit' in '%r' % (ratio,))\n",
        7,
        "formatting",
    ),
    "attribute probed under try": (
        BASE_DRIFT + "    try:\n        ratio.batch_dim\n        return base - 0.1\n"
        "    except AttributeError:\n        return base\n",
        7,
        "try statements",
    ),
}


@pytest.mark.parametrize(
    ("name", "cases", "why"),
    [(n, STATEFUL, "no state") for n in STATEFUL]
    + [(n, TELLS, "tell how it is called") for n in TELLS],
)
def test_state_and_tells_of_the_caller_are_rejected_with_their_line(name, cases, why):
    source, line, fragment = cases[name]
    violations = check_source(source)
    assert any(v.line == line and fragment in v.message and why in v.message for v in violations), [
        str(v) for v in violations
    ]


def test_oversized_source_is_rejected():
    source = "x = 1\n" * (MAX_SOURCE_BYTES // 6 + 10)
    (violation,) = check_source(source)
    assert "limit" in violation.message


@pytest.mark.parametrize(
    "source",
    [
        OK_HEADER + "def drift(ratio, advantage):\n"
        "    return jnp.maximum((ratio - 1.0) ** 2 * advantage, 0.0)\n",
        "from jax import numpy as jnp, lax, nn\nimport math, functools\n"
        "from typing import Callable\n\n"
        "def drift(r, a):\n    return nn.relu(lax.square(r - 1.0)) * math.pi\n",
        "import optax\n\ndef make_optimizer(lr, m):\n"
        "    return optax.chain(optax.clip_by_global_norm(m), optax.adam(lr, eps=1e-5))\n",
        OK_HEADER + "def drift(r, a):\n    x = jax.random.normal(jax.random.key(0), r.shape)\n"
        "    return 0.0 * x * (r - 1) ** 2\n",
        # State of one call only: a list built and filled here, arrays updated functionally.
        OK_HEADER + "W = jnp.array([1.0, 0.5])\n\ndef drift(r, a, scale=(1.0, -2.0)):\n"
        "    terms = []\n    terms.append(W[0] * (r - 1.0) ** 2)\n    total = 0.0\n"
        "    for t in terms:\n        total += t\n"
        "    return total.at[0].add(0.0) * scale[0]\n",
    ],
)
def test_honest_candidates_pass(source):
    assert check_source(source) == []


def test_loader_enforces_the_allowlist_at_run_time_too():
    # Statically clean, but the loader's restricted builtins have no open() either.
    with pytest.raises(CandidateLoadError, match="static|not allowed"):
        load_entry_point("import os\ndef drift(r, a):\n    return r\n", "drift")
    drift = load_entry_point(OK_HEADER + "def drift(r, a):\n    return (r - 1.0) ** 2\n", "drift")
    assert float(drift(3.0, 1.0)) == 4.0
    with pytest.raises(CandidateLoadError, match="must define a function drift"):
        load_entry_point(OK_HEADER + "x = 1\n", "drift")
    with pytest.raises(CandidateLoadError, match="ZeroDivisionError"):
        load_entry_point("x = 1 / 0\n", "drift")


@pytest.mark.parametrize(
    "source",
    ["from . import x\n", "from .. import y\n", "from .z import *\n", "import\n", "\x00\n"],
)
def test_malformed_imports_are_rejected_not_crashes(source):
    assert check_source(source)


def test_pathological_nesting_is_rejected_not_a_crash():
    assert check_source("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n")
    assert check_source("x = " + "-" * 15000 + "1\n")


@pytest.mark.parametrize(
    "source",
    [
        # A library call handing back the set it was given, then .add (not a name the static
        # rules can refuse: jnp arrays and optax use it too) counts the calls.
        "S = (lambda s: s)({0})\n\ndef drift(r, a):\n    S.add(len(S))\n    return r\n",
        # A factory's closure over a set it built.
        "def make():\n    s = {0}\n\n    def drift(r, a):\n        s.add(len(s))\n"
        "        return r\n\n    return drift\n\ndrift = make()\n",
        OK_HEADER + "L = jax.tree.map(lambda x: x, [1, 2])\n\ndef drift(r, a):\n    return r\n",
    ],
)
def test_a_loaded_module_holding_mutable_state_is_refused(source):
    assert check_source(source) == []  # what the static rules cannot see...
    with pytest.raises(CandidateLoadError, match="keeps mutable state"):
        load_entry_point(source, "drift")  # ...the loaded module shows


def test_immutable_module_state_loads():
    source = (
        OK_HEADER + "import functools\n\nW = jnp.array([1.0, 2.0])\nT = (1, (2.0, 'x'))\n\n"
        "def f(r, a, k):\n    return k * W[0] * (r - 1.0) ** 2\n\n"
        "drift = functools.partial(f, k=2.0)\n"
    )
    assert callable(load_entry_point(source, "drift"))


COMPILE_HEADER = OK_HEADER + "\ndef drift(r, a):\n    return (r - 1.0) ** 2\n\n"

# Routes to XLA's compiler options (xla_dump_to writes files where it is told, at load time
# when called at module level) and to JAX's process-wide settings: line 7 in each.
COMPILER_ROUTES = {
    "compiler_options keyword": (
        "w = jax.jit(drift, compiler_options={'xla_dump_to': '/tmp/d'})\n",
        "'compiler_options'",
    ),
    "keywords spelled through **": (
        "w = jax.jit(drift, **{'compiler_' + 'options': {}})\n",
        "'**' unpacking",
    ),
    "ahead-of-time lower": ("w = jax.jit(drift).lower(1.0, 1.0)\n", "'lower'"),
    "ahead-of-time compile": ("w = jax.jit(drift).lower(1.0, 1.0).compile()\n", "'compile'"),
    "ahead-of-time trace": ("w = jax.jit(drift).trace(1.0, 1.0)\n", "'trace'"),
    "an XLA flag as a string": ("w = jnp.sum(jnp.ones(1)) * len('--xla_dump_to')\n", "XLA"),
    "a JAX setting as a keyword": ("w = drift(1.0, 1.0, jax_enable_x64=True)\n", "XLA or JAX"),
    "a setting's context manager": ("w = jax.log_compiles\n", "JAX's settings"),
    "numpy scalar pickled to a file": ("w = jnp.finfo(jnp.float32).eps.dump\n", "'dump'"),
}


@pytest.mark.parametrize("name", COMPILER_ROUTES)
def test_compiler_options_and_settings_are_refused_with_their_line(name):
    """Each spelling of a route to XLA's compiler options or JAX's settings is refused, on
    its own line, before anything runs."""
    code, fragment = COMPILER_ROUTES[name]
    violations = check_source(COMPILE_HEADER + code)
    assert any(v.line == 7 and fragment in v.message for v in violations), [
        str(v) for v in violations
    ]


def test_every_baseline_and_template_passes_the_new_refusals():
    """No honest candidate the project ships uses a name the compiler-route rules refuse."""
    from sandbox.tasks import list_tasks, load_task

    for task in list_tasks():
        spec = load_task(task)
        for name in spec.baseline_names:
            assert check_source(spec.baseline_source(name)) == [], (task, name)
