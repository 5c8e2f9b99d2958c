"""Legible formulas (sandbox/formulas.py): sympy's simplest form of an expression tree,
checked numerically against the tree, shown as MathML in the browser and as LaTeX and an
SVG in the report."""

import base64
import random
import re
import time

import numpy as np
import pytest
import sympy
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session
from test_web import LOCAL, build_archive, section

from sandbox import expressions as ex
from sandbox import formulas
from sandbox.tasks import load_task
from scientist.proposers.base import ParentView, ProposalRequest
from scientist.proposers.mutation import MutationProposer, load_grammar
from scientist.report.data import collect
from scientist.report.figures import formula_figures
from scientist.report.render import Figures, render_html, render_markdown
from scientist.web.app import create_app
from scientist.web.engine import reader_engine

DRIFT_INPUTS = ("ratio", "advantage")
RATIO, ADVANTAGE = ex.Var("ratio"), ex.Var("advantage")
LOG_R = ex.Op("log", (RATIO,))
R_MINUS_CLIP = ex.Op("sub", (RATIO, ex.Op("clip", (RATIO, ex.Const(0.8), ex.Const(1.2)))))
SECONDS_PER_TREE = 10.0  # the budget (1 s) plus the slowest pass it may still start


def random_points(inputs: tuple[str, ...], seed: int, n: int = 400) -> dict[str, np.ndarray]:
    """Points off the check grid: ratios log-normal around 1 (to 1e-3 and 1e3), advantages
    and other inputs of both signs up to +-30."""
    rng = np.random.default_rng(seed)
    return {
        name: np.exp(rng.normal(0.0, 2.0, n))
        if formulas.variable(name).positive
        else rng.standard_t(2, n) * 3.0
        for name in inputs
    }


def assert_same_where_finite(simplified: ex.Node, original: ex.Node, points) -> None:
    before, after = ex.evaluate(original, points), ex.evaluate(simplified, points)
    finite = np.isfinite(before)
    np.testing.assert_allclose(after[finite], before[finite], rtol=1e-5, atol=1e-8)


# --- the issue's example -----------------------------------------------------------------------


def issue_example() -> ex.Node:
    """(r-1-log r)*X^2 with X = -(-(log r))*((log r-log r)+-(r-clip(r))), as the mutation
    proposer built it from the mirror_drift grammar's wrapper and terminals."""
    x = ex.Op(
        "mul",
        (
            ex.Op("neg", (ex.Op("neg", (LOG_R,)),)),
            ex.Op("add", (ex.Op("sub", (LOG_R, LOG_R)), ex.Op("neg", (R_MINUS_CLIP,)))),
        ),
    )
    r_minus_1_minus_log = ex.Op("sub", (ex.Op("sub", (RATIO, ex.Const(1.0))), LOG_R))
    return ex.Op("mul", (r_minus_1_minus_log, ex.Op("square", (x,))))


def test_the_issue_example_comes_out_in_its_simplest_form():
    tree = issue_example()
    grammar = load_grammar(load_task("mirror_drift"))
    names = {t: n for n, t in grammar.terminals.items()}
    assert "-(-(log r))*((log r-log r)+-(r-clip(r)))" in ex.describe(tree, names, limit=200)

    formula = formulas.simplest(tree, DRIFT_INPUTS)

    r = sympy.Symbol("r", positive=True)
    clip = formulas.CLIP(r, sympy.Rational(4, 5), sympy.Rational(6, 5))
    expected = (r - 1 - sympy.log(r)) * sympy.log(r) ** 2 * (r - clip) ** 2
    assert sympy.expand(formula.expression - expected) == 0
    assert ex.size(formula.tree) == 18 < ex.size(tree) == 26  # nothing left to cancel
    text = ex.describe(formula.tree, names, limit=200)
    assert "-(" not in text and "log r-log r" not in text
    latex = formula.latex()
    assert latex.count(r"\log") == 2 and latex.count(r"\operatorname{clip}") == 1
    assert "0.8" in latex and "1.2" in latex  # the code's decimals, not 4/5
    assert_same_where_finite(formula.tree, tree, random_points(DRIFT_INPUTS, 0))
    assert formulas.same_function(formula.tree, tree, formulas.check_points(DRIFT_INPUTS))


def test_the_simplest_tree_renders_to_code_that_parses_back_to_it():
    formula = formulas.simplest(issue_example(), DRIFT_INPUTS)
    body = ex.render_body(formula.tree, DRIFT_INPUTS)
    source = f"import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n    {body}\n"
    assert ex.parse_module(source, "drift", DRIFT_INPUTS) == formula.tree
    shown = formulas.of_source(source, "drift", DRIFT_INPUTS)
    assert shown.tree == formula.tree and shown.latex() == formula.latex()


# --- every operator, and what is refused ------------------------------------------------------

OPERAND = {1: (ex.Op("sub", (ADVANTAGE, ex.Const(0.5))),), 2: (RATIO, ADVANTAGE)}
OPERAND[3] = (ADVANTAGE, RATIO, ex.Op("tanh", (ADVANTAGE,)))


@pytest.mark.parametrize("name", sorted(ex.OPS))
def test_every_operator_has_an_exact_formula(name):
    tree = ex.Op(name, OPERAND[ex.OPS[name].arity])
    formula = formulas.simplest(tree, DRIFT_INPUTS)
    assert formula.expression is not None, name
    assert_same_where_finite(formula.tree, tree, random_points(DRIFT_INPUTS, 1))
    assert formula.latex() and formula.mathml().startswith("<math ")


def test_nothing_sympy_cannot_express_exactly_gets_a_formula():
    tree = ex.Op("div", (ADVANTAGE, ex.Const(0.0)))  # sympy's x / 0 is complex infinity
    formula = formulas.simplest(tree, DRIFT_INPUTS)
    assert formula.tree == tree and formula.expression is None and formula.latex() is None
    with pytest.raises(formulas.Untranslatable, match="power"):
        formulas.to_tree(sympy.sqrt(sympy.Symbol("A", real=True)), {})


def test_the_check_tells_different_functions_apart():
    points = formulas.check_points(DRIFT_INPUTS)
    square = ex.Op("square", (ADVANTAGE,))
    assert formulas.same_function(square, ex.Op("mul", (ADVANTAGE, ADVANTAGE)), points)
    assert not formulas.same_function(ADVANTAGE, ex.Op("abs", (ADVANTAGE,)), points)
    # relu(A) and max(A, 1e-3) differ only between 0 and 1e-3: the grid has a point there.
    relu = ex.Op("relu", (ADVANTAGE,))
    assert not formulas.same_function(relu, ex.Op("maximum", (ADVANTAGE, ex.Const(1e-3))), points)


# --- random trees from the proposer's own generators -----------------------------------------


def every_op(task_name: str) -> tuple[ex.Grammar, tuple[str, ...]]:
    """The task's grammar with every operator of the table, not only the task's choice."""
    task = load_task(task_name)
    grammar = load_grammar(task)
    full = ex.Grammar(grammar.terminals, tuple(ex.OPS), grammar.constant_range, 0.15)
    return full, tuple(task.inputs)


GRAMMARS = {name: every_op(name) for name in ("mirror_drift", "value_loss")}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    task_name=st.sampled_from(sorted(GRAMMARS)),
    depth=st.integers(1, 5),
)
def test_random_trees_simplify_to_equal_never_larger_trees_in_bounded_time(seed, task_name, depth):
    grammar, inputs = GRAMMARS[task_name]
    tree = ex.ramped_tree(random.Random(seed), grammar, depth)
    start = time.monotonic()
    formula = formulas.simplest(tree, inputs)
    assert time.monotonic() - start < SECONDS_PER_TREE
    assert ex.size(formula.tree) <= ex.size(tree)
    assert_same_where_finite(formula.tree, tree, random_points(inputs, seed))


# --- the mutation proposer ---------------------------------------------------------------------


def test_mutation_proposals_are_already_in_their_simplest_form():
    task = load_task("mirror_drift")
    proposer = MutationProposer(task)
    parents = [
        ParentView(id=i, code=task.baseline_source(name), status="ok", fitness=1.0, origin="b")
        for i, name in ((1, "ppo"), (2, "dpo"))
    ]
    rng = random.Random(4)
    simplified = 0
    for generation in range(8):
        request = ProposalRequest(task, 0, generation, parents, [], [], rng)
        proposal = proposer.propose(request)
        tree = ex.parse_module(proposal.code, task.entry_point, DRIFT_INPUTS)
        again = formulas.simplest(tree, DRIFT_INPUTS).tree
        assert ex.size(again) == ex.size(tree), proposal.note
        simplified += "simplest form" in proposal.note
    assert simplified  # some children were simplified before they were rendered


# --- the browser and the report ----------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("formulas")
    ids = build_archive(root / "archive.db", root / "EXECUTED", fillers=2)
    return root, f"sqlite:///{root / 'archive.db'}", ids


def test_candidate_page_shows_the_formula_as_mathml_next_to_the_code(archive):
    root, url, ids = archive
    client = TestClient(create_app(reader_engine(url), root / "landscapes"), base_url=LOCAL)
    page = client.get(f"/candidates/{ids['fillers'][0]}")  # 2 * jnp.square(ratio - 1.0)
    assert page.status_code == 200 and "<dd>mutation (mutate)</dd>" in page.text
    code = section(page.text, "code")
    mathml = re.search(r'<math xmlns="http://www.w3.org/1998/Math/MathML".*?</math>', code)
    assert mathml and "<mi>r</mi>" in mathml.group() and "<mn>2</mn>" in mathml.group()
    assert code.index("<math") < code.index('class="highlight')  # formula, then its code
    assert r"2 \left(r - 1\right)^{2}" in code  # the LaTeX to copy
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<math" not in section(client.get(f"/candidates/{ids['hostile']}").text, "code")


def test_report_shows_each_discovered_formula_as_svg_and_latex(archive):
    _, url, ids = archive
    with Session(reader_engine(url)) as session:
        data = collect(session, "demo")
    child = next(e for e in data.discovered if e.id == ids["child"])  # PPO clipped at 0.75, 1.25
    assert r"\operatorname{clip}" in child.formula and "0.75" in child.formula
    figures = Figures(formulas=formula_figures(data))
    svg = figures.formulas[child.id]
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"<path" in svg
    assert svg == formula_figures(data)[child.id]  # the same formula, the same bytes
    html = render_html(data, figures)
    block = html.split(f"<h3>{child.label}", 1)[1].split('<div class="algorithm">', 1)[0]
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    assert block.index(uri) < block.index('<div class="code">')  # the formula, then its code
    assert f"<code>{child.formula}</code>" in block
    markdown, _ = render_markdown(data, figures)
    assert f"$$\n{child.formula}\n$$" in markdown
