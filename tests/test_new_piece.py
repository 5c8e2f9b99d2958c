"""A task on a new kind of piece is one piece module and one task folder: here an advantage
transform, `transform(advantage) -> advantage`, elementwise, filling the trainer's
`advantage` plug point. Both are added to a copy of this working tree (with its own venv,
tests/venvs.py); nothing else in it is edited. The new task is then checked, trained and
archived end to end at the smoke budget through the CLI and the process sandbox.

Slow: two smoke evaluations."""

import json
import textwrap

import pytest
from llm_server import completion, recorded_server
from venvs import REPO, copy_working_tree, make_venv, run_from

pytestmark = pytest.mark.slow

PIECE_MODULE = '''
"""Advantage transforms: `transform(advantage)`, elementwise, applied to the normalised
minibatch advantages before the policy loss. Valid: finite, and order- and sign-preserving
(a better action never looks worse, a good one never looks bad)."""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.checks.contract import describe_failure
from sandbox.checks.report import CheckResult
from sandbox.pieces.base import Contract, JaxProbe, Piece
from sandbox.training.components import PlugPoint

ADVANTAGES = np.linspace(-10.0, 10.0, 401)


def check(transform, filename="candidate.py", *, sizes=None, proof_function=None):
    names = ("finite", "keeps_sign", "keeps_order")
    with jax.enable_x64(True):
        try:
            values = JaxProbe(transform).values(ADVANTAGES)
        except Exception as error:
            return [CheckResult(n, False, describe_failure(error, filename)) for n in names]
    results = []
    for name, bad, what in (
        ("finite", ~np.isfinite(values), "is not finite"),
        ("keeps_sign", np.sign(values) != np.sign(ADVANTAGES), "has another sign than A"),
        (
            "keeps_order",
            np.concatenate([[False], np.diff(values) < 0]),
            "is below the value at a smaller A",
        ),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            results.append(
                CheckResult(
                    name,
                    False,
                    f"transform(A={ADVANTAGES[i]:.4g}) = {values[i]:.4g} {what}",
                    {"A": float(ADVANTAGES[i]), "value": float(values[i])},
                )
            )
        else:
            results.append(
                CheckResult(name, True, f"holds at {ADVANTAGES.size} advantages in [-10, 10]")
            )
    return results


def behaviour(transform):
    return np.asarray(transform(jnp.linspace(-3.0, 3.0, 25, dtype=jnp.float32)), np.float64)


PIECE = Piece(
    kind="advantage_transform",
    plug_point=PlugPoint.ADVANTAGE,
    contract=Contract.ELEMENTWISE,
    arity=1,
    default=None,
    check=check,
    behaviour=behaviour,
    evidence="Sign and order are checked at 401 advantages in [-10, 10].",
)
'''

TASK_TOML = '''
name = "advantage_transform"
summary = "A transform of the normalised advantages that the policy loss sees."
piece = "advantage_transform"
entry_point = "transform"
prototype = "transform(advantage)"
normaliser = "random_ppo"
budgets = ["smoke"]
description = """
The policy loss uses transform(A) in place of the normalised advantage A. A valid transform is
finite, keeps the sign of A and never reverses the order of two advantages.
"""

[inputs]
advantage = "float32 array, normalised per minibatch (mean 0, std 1)"

[output]
returns = "float32 array of the input shape, elementwise"

[splits.default]
meta_train = ["CartPole-v1"]
meta_test = ["Acrobot-v1"]
'''

TEMPLATE = """{% if source -%}
{{ source }}
{% else -%}
import jax.numpy as jnp


def transform(advantage):
{{ body | indent(4, first=True) }}
{% endif -%}
"""

IDENTITY = (
    'def transform(advantage):\n    """PPO: the advantages as they are."""\n    return advantage\n'
)
SQUASHED = (
    "import jax.numpy as jnp\n\n\n"
    "def transform(advantage):\n    return 2.0 * jnp.tanh(advantage / 2.0)\n"
)
REVERSED = "def transform(advantage):\n    return -advantage\n"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the working tree plus the new piece module and task folder, and its venv."""
    root = tmp_path_factory.mktemp("new-piece")
    tree = copy_working_tree(root / "checkout")
    (tree / "sandbox" / "pieces" / "advantage_transform.py").write_text(
        textwrap.dedent(PIECE_MODULE).lstrip()
    )
    folder = tree / "task_templates" / "advantage_transform"
    (folder / "baselines").mkdir(parents=True)
    (folder / "task.toml").write_text(TASK_TOML.lstrip())
    (folder / "candidate.py.j2").write_text(TEMPLATE)
    (folder / "baselines" / "identity.py").write_text(IDENTITY)
    for name, source in (("squashed.py", SQUASHED), ("reversed.py", REVERSED)):
        (root / name).write_text(source)
    return root, tree, make_venv(root / "venv", tree)


def test_the_copy_differs_from_this_checkout_by_the_two_additions_only(checkout):
    root, tree, _ = checkout
    added = {
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.is_file() and not (REPO / p.relative_to(tree)).exists()
    }
    assert {a for a in added if ".egg-info" not in a} == {
        "sandbox/pieces/advantage_transform.py",
        "task_templates/advantage_transform/task.toml",
        "task_templates/advantage_transform/candidate.py.j2",
        "task_templates/advantage_transform/baselines/identity.py",
    }


def test_candidates_of_the_new_kind_are_checked(checkout):
    root, tree, venv = checkout
    valid = run_from(
        venv, tree, "check", "--task", "advantage_transform", str(root / "squashed.py"), "--json"
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr[-2000:]
    report = json.loads(valid.stdout)
    assert [c["name"] for c in report["checks"]] == [
        "static",
        "load",
        "shape",
        "gradient_path",
        "finite",
        "keeps_sign",
        "keeps_order",
    ]
    invalid = run_from(
        venv, tree, "check", "--task", "advantage_transform", str(root / "reversed.py"), "--json"
    )
    assert invalid.returncode == 1
    failed = {c["name"]: c for c in json.loads(invalid.stdout)["checks"] if not c["passed"]}
    assert (
        set(failed) == {"keeps_sign", "keeps_order"}
        and failed["keeps_sign"]["counterexample"]["A"] != 0
    )


def test_a_campaign_on_the_new_task_proposes_trains_and_archives(checkout):
    """The LLM proposer (litellm's real HTTP client, against a local server playing back a
    recorded reply: no paid API in CI) writes one candidate of the new kind from the task's
    prompts; it and the baseline are trained in the sandbox and archived."""
    root, tree, venv = checkout
    db = f"sqlite:///{root}/archive.db"
    reply = f"A gentler transform.\n\n```python\n{SQUASHED}```\n"
    with recorded_server([completion(reply)]) as server:
        run = run_from(
            venv,
            tree,
            "run",
            "--task",
            "advantage_transform",
            "--budget",
            "smoke",
            "--generations",
            "1",
            "--population",
            "1",
            "--islands",
            "1",
            "--reevaluate-top",
            "0",
            "--model",
            "openai/recorded-model",
            "--api-base",
            server.base_url,
            "--sandbox",
            "process",
            "--name",
            "advantage",
            "--db",
            db,
            env={"SCIENTIST_API_KEY": "sk-test-not-real"},
        )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "def transform(advantage)" in server.requests[0].prompt_text
    listed = [
        json.loads(line)
        for line in run_from(
            venv, tree, "archive", "list", "advantage", "--json", "--db", db
        ).stdout.splitlines()
    ]
    assert [(r["origin"], r["status"]) for r in listed] == [("baseline", "ok"), ("llm", "ok")], (
        listed
    )
    assert all(r["fitness"] > 0.3 for r in listed) and listed[1]["parent_id"] == listed[0]["id"]
    shown = json.loads(
        run_from(venv, tree, "archive", "show", str(listed[1]["id"]), "--json", "--db", db).stdout
    )
    assert "jnp.tanh(advantage / 2.0)" in shown["code"]
    assert [s["name"] for s in shown["stages"]] == [
        "static",
        "trace",
        "validity",
        "trial",
        "full",
        "score",
    ]
    assert {c["name"] for c in shown["checks"]["checks"]} == {
        "gradient_path",
        "finite",
        "keeps_sign",
        "keeps_order",
    }
    assert set(shown["per_env"]["meta_train"]) == {"CartPole-v1"} and shown["signature"]
