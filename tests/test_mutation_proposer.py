"""The offline mutation proposer: parsing candidates into expression trees and back, variation
within limits, determinism, and proposals that the real sandbox checks accept."""

import sandbox  # noqa: F401  (sets XLA flags before jax is imported)

# isort: split

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import expressions as ex
from sandbox.candidate import load_entry_point
from sandbox.checks.pipeline import run_conditions
from sandbox.checks.static import check_source
from sandbox.tasks import load_task
from scientist.proposers.base import ParentView, ProposalRequest, ProposerError
from scientist.proposers.mutation import MutationProposer, load_grammar

BASELINES = [
    ("mirror_drift", "ppo"),
    ("mirror_drift", "dpo"),
    ("mirror_drift", "zero"),
    ("value_loss", "squared_error"),
    ("value_loss", "huber"),
]

LLM_STYLE = """import jax.numpy as jnp


def drift(ratio, advantage):
    total = jnp.zeros_like(ratio)
    for k in range(3):
        total = total + jnp.square(ratio - 1.0) / (k + 1)
    return total
"""


def grid(task_name: str):
    """Points covering the interesting region of each task (and its kinks)."""
    if task_name == "mirror_drift":
        x = np.unique(np.concatenate([np.geomspace(0.1, 10.0, 61), [0.8, 1.0, 1.2]]))
        y = np.linspace(-5.0, 5.0, 21)
    else:
        x = np.linspace(-10.0, 10.0, 41)
        y = np.linspace(-10.0, 10.0, 21)
    return [m.ravel() for m in np.meshgrid(x, y, indexing="ij")]


def with_jax(code: str, entry_point: str, x, y) -> np.ndarray:
    fn = load_entry_point(code, entry_point)
    with jax.enable_x64(True):
        return np.asarray(fn(jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)))


def parent(task, name: str, id_: int) -> ParentView:
    return ParentView(
        id=id_, code=task.baseline_source(name), status="ok", fitness=1.0, origin="baseline"
    )


def request(task, parents, rng, generation=0) -> ProposalRequest:
    return ProposalRequest(
        task=task,
        island=0,
        generation=generation,
        parents=parents,
        inspirations=[],
        failures=[],
        rng=rng,
    )


def proposals(task, parents, n, seed=0, **options):
    proposer = MutationProposer(task, **options)
    rng = random.Random(seed)
    return proposer, [proposer.propose(request(task, parents, rng, g)) for g in range(n)]


# --- parsing and rendering ------------------------------------------------------------------------


@pytest.mark.parametrize("task_name, baseline", BASELINES)
def test_parser_round_trips_the_baselines(task_name, baseline):
    task = load_task(task_name)
    proposer = MutationProposer(task)
    source = task.baseline_source(baseline)
    tree = proposer.parse(source)
    assert tree is not None
    code = proposer.render(tree)
    assert check_source(code) == []
    assert proposer.parse(code) == tree  # rendering is the parser's inverse
    x, y = grid(task_name)
    expected = with_jax(source, task.entry_point, x, y)
    env = dict(zip(task.inputs, (x, y)))
    np.testing.assert_allclose(ex.evaluate(tree, env), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        with_jax(code, task.entry_point, x, y), expected, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "body",
    [
        "for k in range(2):\n        ratio = ratio * 1.0\n    return ratio",  # a loop
        "if True:\n        return ratio\n    return advantage",  # a branch
        "return helper(ratio)",  # a call outside the grammar
        "return jnp.abs(ratio - 1.0) ** 1.5",  # a power other than 2
        "return jnp.where((ratio > 1) & (advantage > 0), ratio, advantage)",  # a compound condition
        "advantage = advantage * 2.0\n    return advantage",  # rebinding an input
    ],
)
def test_parser_refuses_code_outside_the_grammar(body):
    source = f"import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n    {body}\n"
    assert ex.parse_function(source, "drift", ("ratio", "advantage")) is None
    assert ex.parse_function(LLM_STYLE, "drift", ("ratio", "advantage")) is None


def test_parser_inlines_constants_defaults_and_augmented_assignments():
    source = (
        "import jax\nfrom jax import numpy as np\n\nSCALE = 0.5\n\n\n"
        "def drift(ratio, advantage, beta=2.0):\n"
        "    d = (ratio - 1.0) ** 2\n    d *= beta\n"
        "    return SCALE * d * jax.nn.sigmoid(advantage) + np.zeros_like(ratio)\n"
    )
    tree = ex.parse_function(source, "drift", ("ratio", "advantage"))
    r, a = np.array([0.5, 2.0]), np.array([-1.0, 3.0])
    np.testing.assert_allclose(
        ex.evaluate(tree, {"ratio": r, "advantage": a}), 0.5 * (r - 1) ** 2 * 2.0 / (1 + np.exp(-a))
    )


def test_rendered_random_trees_parse_back_to_themselves():
    grammar = load_grammar(load_task("mirror_drift"))
    wide = ex.Grammar(grammar.terminals, tuple(ex.OPS), (-3.0, 3.0), p_constant=0.3)
    rng = random.Random(3)
    for _ in range(300):
        tree = ex.simplify(ex.ramped_tree(rng, wide, 5))
        if not ex.variables(tree):
            continue
        source = (
            "import jax\nimport jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
            + "".join(
                f"    {line}\n"
                for line in ex.render_body(tree, ("ratio", "advantage")).splitlines()
            )
        )
        assert ex.parse_function(source, "drift", ("ratio", "advantage")) == tree, source


def test_numpy_slopes_follow_jax_at_kinks():
    """The pre-screen's slope at r = 1 must be the one the sandbox's autodiff sees."""
    bodies = [
        "jnp.maximum((ratio - jnp.clip(ratio, 0.8, 1.2)) * advantage, 0.0)",
        # a tie at the clip bound
        "jnp.maximum((ratio - jnp.clip(ratio, 1.0, 1.2)) * advantage, 0.0)",
        "jnp.maximum(jnp.log(ratio) * advantage "
        "- 0.6 * jax.nn.relu(jnp.log(ratio) * advantage), 0.0)",
        "jnp.where(ratio - 1.0 >= 0, jnp.abs(ratio - 1.0) * advantage, "
        "jnp.minimum(ratio - 1.0, 0.0))",
        "jnp.square(jnp.tanh(ratio - 1.0)) * jax.nn.softplus(advantage) "
        "/ (1.0 + jnp.abs(advantage))",
    ]
    r = np.concatenate([np.ones(5), [0.5, 0.8, 1.2, 2.0]])
    a = np.concatenate([[-2.0, -0.5, 0.0, 0.5, 2.0], [1.0, -1.0, 1.5, -3.0]])
    for body in bodies:
        tree = ex.parse_expression(body, ("ratio", "advantage"))
        _, numpy_slope = ex.derivative(tree, {"ratio": r, "advantage": a}, "ratio")
        fn = load_entry_point(
            "import jax\nimport jax.numpy as jnp\n\n\n"
            f"def f(ratio, advantage):\n    return {body}\n",
            "f",
        )
        with jax.enable_x64(True):
            grad = jax.vmap(jax.grad(lambda x, y: fn(x[None], y[None])[0]))(
                jnp.asarray(r), jnp.asarray(a)
            )
        np.testing.assert_allclose(
            numpy_slope, np.asarray(grad), rtol=1e-9, atol=1e-12, err_msg=body
        )


# --- the pre-screen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, verdict",
    [
        ("(ratio - 1.0) ** 2 * jnp.abs(advantage)", None),
        ("ratio - 1.0 - jnp.log(ratio)", None),
        ("jnp.maximum(jnp.abs(ratio - 1.0) - 0.2, 0.0) * jnp.abs(advantage)", None),
        ("(ratio - 1.0) * advantage", "negative"),
        ("(ratio - 1.0) ** 2 * (1.0 - 0.02 * advantage ** 2)", "negative"),
        ("(ratio - 1.0) ** 2 + 1e-3", "nonzero at r=1"),
        ("jnp.abs(ratio - 1.0)", "slope at r=1"),
        ("jax.nn.relu((ratio - 1.0) * advantage)", "slope at r=1"),
        ("jnp.where(ratio > 1.0, ratio - 1.0, (ratio - 1.0) ** 2)", "slope at r=1"),
        (
            "jnp.maximum((ratio - jnp.clip(ratio, 1.0, 1.2)) * advantage, 0.0)",
            "slope at r=1",
        ),  # autodiff's tie
        ("(ratio - 1.0) ** 2 * jnp.log(advantage)", "non-finite"),
    ],
)
def test_drift_screen_agrees_with_the_sandbox_conditions(body, verdict):
    proposer = MutationProposer(load_task("mirror_drift"))
    assert proposer.screen.reject(ex.parse_expression(body, ("ratio", "advantage"))) == verdict


# --- variation ------------------------------------------------------------------------------------


def test_random_trees_and_children_respect_the_limits():
    task = load_task("mirror_drift")
    grammar = load_grammar(task)
    rng = random.Random(0)
    for _ in range(200):
        assert ex.depth(ex.ramped_tree(rng, grammar, 4), grammar.atoms) <= 4
    parents = [parent(task, "ppo", 1), parent(task, "dpo", 2)]
    proposer, made = proposals(task, parents, 40, max_depth=5, max_nodes=20)
    limit_nodes = max(20, *(ex.size(proposer.parse(p.code), proposer.atoms) for p in parents))
    limit_depth = max(5, *(ex.depth(proposer.parse(p.code), proposer.atoms) for p in parents))
    assert {p.operator for p in made} >= {"mutate", "crossover"}
    for p in made:
        tree = proposer.parse(p.code)
        assert (
            ex.size(tree, proposer.atoms) <= limit_nodes
            and ex.depth(tree, proposer.atoms) <= limit_depth
        )


def test_crossover_and_mutation_primitives():
    rng = random.Random(1)
    a = ex.parse_expression("jnp.maximum((ratio - 1.0) * advantage, 0.0)", ("ratio", "advantage"))
    b = ex.parse_expression(
        "jnp.tanh(jnp.abs(advantage)) * jnp.square(ratio - 1.0)", ("ratio", "advantage")
    )
    donors = {n for _, n in ex.walk(b)}
    for _ in range(50):
        child, path, inserted = ex.crossover(rng, a, b)
        assert inserted in donors and ex.get(child, path) == inserted
        changed, old, new = ex.perturb_constants(rng, a)
        assert old in (0.0, 1.0) and new != old and changed != a
    assert ex.simplify(
        ex.parse_expression("jnp.abs(jnp.square(-(ratio))) * 1.0 + 0.0", ("ratio",))
    ) == ex.Op("square", (ex.Var("ratio"),))


def test_proposals_are_deterministic_under_a_seed():
    task = load_task("mirror_drift")
    parents = [parent(task, "ppo", 1), parent(task, "dpo", 2)]
    first = [(p.code, p.note, p.operator) for p in proposals(task, parents, 15, seed=7)[1]]
    again = [(p.code, p.note, p.operator) for p in proposals(task, parents, 15, seed=7)[1]]
    other = [(p.code, p.note, p.operator) for p in proposals(task, parents, 15, seed=8)[1]]
    assert first == again and first != other


@pytest.mark.parametrize(
    "task_name, names",
    [
        ("mirror_drift", ["ppo", "dpo"]),
        ("mirror_drift", []),
        ("value_loss", ["huber", "squared_error"]),
        ("value_loss", []),
    ],
)
def test_proposals_pass_the_static_check_and_differ_from_their_parents(task_name, names):
    task = load_task(task_name)
    parents = [parent(task, n, i) for i, n in enumerate(names)]
    proposer, made = proposals(task, parents, 30)
    assert all(p.code is not None for p in made)
    assert len({p.code for p in made}) == len(made)  # never the same proposal twice
    for p in made:
        assert check_source(p.code) == [], p.code
        assert p.code not in {v.code for v in parents}
        assert p.note and p.operator in ("mutate", "crossover", "random")
        assert set(p.parent_ids) <= {v.id for v in parents}
        assert p.operator != "random" or p.parent_ids == []


# --- the real sandbox checks ----------------------------------------------------------------------


def assert_valid_in_sandbox(task, code):
    report = run_conditions(task, load_entry_point(code, task.entry_point))
    assert report.valid, ([(c.name, c.detail) for c in report.failures], code)


def test_drift_proposals_pass_the_sandbox_drift_conditions():
    task = load_task("mirror_drift")
    made = (
        proposals(task, [parent(task, "ppo", 1)], 4, seed=11)[1]
        + proposals(task, [parent(task, "dpo", 2)], 3, seed=12)[1]
        + proposals(task, [parent(task, "dpo", 2), parent(task, "ppo", 1)], 3, seed=13)[1]
        + proposals(task, [], 2, seed=14)[1]
    )
    for p in made:
        assert_valid_in_sandbox(task, p.code)


def test_value_loss_proposals_pass_the_sandbox_conditions():
    task = load_task("value_loss")
    made = (
        proposals(task, [parent(task, "huber", 1), parent(task, "squared_error", 2)], 3, seed=21)[1]
        + proposals(task, [], 2, seed=22)[1]
    )
    for p in made:
        assert_valid_in_sandbox(task, p.code)


# --- the edges ------------------------------------------------------------------------------------


def test_optimizer_task_has_no_grammar():
    with pytest.raises(
        ProposerError, match="task optimizer declares no \\[mutation\\] grammar; use --proposer llm"
    ):
        MutationProposer(load_task("optimizer"))


def test_unparseable_parents_are_skipped():
    task = load_task("mirror_drift")
    llm = ParentView(id=9, code=LLM_STYLE, status="ok", fitness=1.2, origin="llm")
    proposer, made = proposals(task, [llm, parent(task, "ppo", 1)], 10, seed=3)
    for p in made:
        assert p.code is not None and 9 not in p.parent_ids
        assert "skipped unparseable parent(s) #9" in p.note
    assert any(p.operator == "mutate" and p.parent_ids == [1] for p in made)
    _, only_llm = proposals(task, [llm], 3, seed=4)
    assert all(p.operator == "random" and p.code is not None for p in only_llm)


def test_no_passing_child_gives_no_code(monkeypatch):
    task = load_task("mirror_drift")
    proposer = MutationProposer(task, max_attempts=5)
    monkeypatch.setattr(proposer.screen, "reject", lambda tree: "negative")
    proposal = proposer.propose(request(task, [parent(task, "ppo", 1)], random.Random(0)))
    assert proposal.code is None and "no child passed the pre-screen in 5 attempts" in proposal.note


def test_a_grammar_without_the_clip_never_proposes_it():
    """The rediscovery ablation (benchmarks.rediscovery --without-clip): with PPO's clip
    terminal and wrapper left out, no proposal from the zero drift uses a clip; a name the
    grammar does not have is refused, by name."""
    from benchmarks.rediscovery import CLIP

    task = load_task("mirror_drift")
    proposer = MutationProposer(task, without=CLIP)
    zero = ParentView(1, task.baseline_source("zero"), "ok", 0.0, "baseline")
    rng, proposed = random.Random(3), []
    for generation in range(40):
        request = ProposalRequest(
            task=task,
            island=0,
            generation=generation,
            parents=[zero],
            inspirations=[],
            failures=[],
            rng=rng,
        )
        code = proposer.propose(request).code
        if code is not None:
            proposed.append(code)
    assert len(proposed) >= 30 and not any("clip" in code for code in proposed)
    with pytest.raises(ProposerError, match="not in the grammar: no-such-terminal"):
        MutationProposer(task, without=["no-such-terminal"])
