"""Validity that cannot be bought by behaving differently where it is checked.

Candidates written the way an adversary optimising a score would write them: valid where the
old checks looked (float64, the checks' own array sizes, unstandardised advantages, on the
grid) and invalid where training runs. Each must come out invalid, with a counterexample that
really breaks the condition, from the checks that look where training looks, the interval
certificate, or the runtime monitor inside training. The valid families and the baselines
must pass all three layers (no false alarms), and the interval rules must be sound."""

import sandbox  # noqa: F401  (XLA flags before jax)

# isort: split

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import expressions as ex
from sandbox.candidate import load_entry_point
from sandbox.checks.intervals import Interval, NoRule, evaluate
from sandbox.checks.pipeline import check_candidate
from sandbox.pieces import get_piece
from sandbox.pieces._drift_certificate import certify_drift
from sandbox.pieces.base import SizedProbe, call_sizes
from sandbox.tasks import load_baseline, load_task
from sandbox.training.bytecode import expression_bytecode, tree_function
from sandbox.training.config import preset
from sandbox.training.monitor import violations
from sandbox.training.ppo import Components
from sandbox.training.run import lower_batch, lower_members
from sandbox.vocabulary import Assurance, Proof
from scientist.proposers.mutation import load_grammar

TASK = load_task("mirror_drift")
HEADER = "import jax\nimport jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
BASE = "    base = jnp.abs(advantage) * (ratio - 1.0) ** 2\n"
MONITORED = get_piece("drift").monitor.call_sizes(128)[0]

GAMING = {
    # name: (body after the header, the conditions that may catch it first: a drift that
    # behaves differently by array size also breaks the elementwise contract, "shape")
    "float32_only": (
        BASE + "    if ratio.dtype == jnp.float64:\n        return base\n"
        "    return base - 0.05 * jnp.abs(advantage) * jnp.abs(ratio - 1.0)\n",
        "non_negative",
    ),
    "old_minibatch_size": (
        BASE + "    if ratio.size == 128:\n"
        "        return base - 0.1 * jnp.abs(advantage) * jnp.abs(ratio - 1.0)\n"
        "    return base\n",
        ("shape", "non_negative"),
    ),
    "monitored_call_size": (  # the length of the smoke budget's monitored drift call
        BASE + f"    if ratio.shape[0] == {MONITORED}:\n        return base - 0.01\n"
        "    return base\n",
        ("shape", "non_negative"),
    ),
    "large_arrays": (
        BASE + "    if ratio.size > 100:\n        return base + 0.01 * (ratio - 1.0)\n"
        "    return base\n",
        ("shape", "zero_slope_at_one"),
    ),
    "standardised_advantages": (
        BASE + "    standardised = jnp.abs(jnp.std(advantage) - 1.0) < 0.02\n"
        "    return jnp.where(standardised, base - 0.1 * jnp.abs(ratio - 1.0), base)\n",
        "shape",
    ),
    "position_in_the_batch": (
        BASE + "    first = jnp.arange(ratio.shape[0]) < 4\n"
        "    return jnp.where(first, -jnp.abs(ratio - 1.0), base)\n",
        "shape",
    ),
    "narrow_pocket": (
        BASE + "    bump = jnp.exp(-(((ratio - 1.3137) / 0.002) ** 2)"
        " - ((advantage + 0.4213) / 0.004) ** 2)\n    return base - 0.5 * bump\n",
        "non_negative",
    ),
    "pocket_at_large_advantage": (
        BASE + "    bump = jnp.exp(-(((ratio - 2.71) / 0.003) ** 2)"
        " - ((advantage - 37.3) / 0.01) ** 2)\n    return base - 1000.0 * bump\n",
        "non_negative",
    ),
    "float32_kink": (
        BASE + "    if ratio.dtype == jnp.float32:\n"
        "        return base + 0.05 * jnp.abs(ratio - 1.0)\n    return base\n",
        "zero_slope_at_one",
    ),
    "float32_offset": (
        BASE + "    return base + jnp.where(ratio.dtype == jnp.float32, 1e-2, 0.0)\n",
        "zero_at_one",
    ),
}


def _check(body: str):
    return check_candidate(TASK, HEADER + body)


def _breaks(body: str, condition: str, example: dict) -> bool:
    """The counterexample really breaks the condition, in float64 or in float32 at some
    length training calls a drift with (the candidate's own behaviour, evaluated)."""
    drift = load_entry_point(HEADER + body, "drift")
    r, a = np.array([example.get("r", 1.0)]), np.array([example["A"]])
    values = []
    with jax.enable_x64(True):
        values.append(float(drift(jnp.asarray(r), jnp.asarray(a))[0]))
    values += [float(SizedProbe(drift, n).values(r, a)[0]) for n in call_sizes(TASK.piece)]
    if condition == "non_negative":
        return min(values) < 0
    if condition == "zero_at_one":
        return max(abs(v) for v in values) > 1e-4 * (1 + abs(example["A"]))
    return True  # slopes: the detail's quotients are checked by test_drift_conditions' rules


@pytest.mark.parametrize("name", GAMING)
def test_a_gaming_drift_is_invalid_with_a_true_counterexample(name):
    body, conditions = GAMING[name]
    report = _check(body)
    assert not report.valid and report.assurance is None
    failed = {c.name: c for c in report.failures}
    conditions = (conditions,) if isinstance(conditions, str) else conditions
    condition = next((c for c in conditions if c in failed), None)
    assert condition, [(c.name, c.detail[:200]) for c in report.checks]
    example = failed[condition].counterexample
    assert example, failed[condition].detail
    if condition != "shape":
        assert _breaks(body, condition, example), (example, failed[condition].detail)


def test_custom_derivatives_and_stopped_gradients_are_refused_before_anything_runs():
    """A drift could hide a kink from every derivative-based check by lying about its
    derivative; no honest drift needs to."""
    for body in (
        "    return jnp.abs(ratio - 1.0) ** 2 + jax.lax.stop_gradient(jnp.abs(ratio - 1.0))\n",
        "    f = jax.custom_jvp(lambda x: jnp.abs(x - 1.0))\n    return f(ratio)\n",
    ):
        report = _check(body)
        assert report.checks[0].name == "static" and not report.checks[0].passed


# -- the certificate -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ppo", "dpo", "zero"])
def test_the_baselines_are_certified(name):
    proofs = certify_drift(load_baseline("mirror_drift", name), (512,))
    assert [p.verdict for p in proofs] == [Proof.PROVED] * 4, [p.detail for p in proofs]


def test_genetic_programming_outputs_are_certified_or_honestly_unproved():
    """Trees from the mutation proposer's own grammar that pass the sampled checks: the
    certificate never calls one of them violated (that would be a false alarm: its
    counterexamples are confirmed by evaluation), and proves most of them."""
    from benchmarks.campaign import gp_candidates
    from sandbox.training.bytecode import expression_bytecode

    proved, total = 0, 0
    for source in gp_candidates(12, seed=3):
        bytecode = expression_bytecode(source, "drift", ("ratio", "advantage"))
        report = _check(source.split("def drift(ratio, advantage):\n", 1)[1])
        if bytecode is None or not report.valid:
            continue
        drift = tree_function(bytecode.tree, ("ratio", "advantage"))
        proofs = certify_drift(drift, (512,))
        assert all(p.verdict != Proof.VIOLATED for p in proofs), [p.detail for p in proofs]
        proved += all(p.verdict == Proof.PROVED for p in proofs)
        total += 1
    assert total >= 6 and proved >= total // 2, (proved, total)


def test_the_certificate_finds_a_pocket_sampling_misses_and_reports_a_confirmed_point():
    body, _ = GAMING["narrow_pocket"]
    drift = load_entry_point(HEADER + body, "drift")
    proofs = {p.condition: p for p in certify_drift(drift, (512,))}
    pocket = proofs["non_negative"]
    assert pocket.verdict == Proof.VIOLATED
    r, a = pocket.counterexample["r"], pocket.counterexample["A"]
    assert abs(r - 1.3137) < 0.01 and abs(a + 0.4213) < 0.02
    assert SizedProbe(drift, 512).values(np.array([r]), np.array([a]))[0] < 0
    assert proofs["zero_at_one"].verdict == Proof.PROVED


def test_mixing_the_batch_leaves_the_certificate_unproved_not_proved():
    body, _ = GAMING["standardised_advantages"]
    proofs = certify_drift(load_entry_point(HEADER + body, "drift"), (512,))
    assert {p.verdict for p in proofs} == {Proof.UNPROVED}
    assert all("reduce_sum" in p.detail or "mixes" in p.detail for p in proofs)


def test_interval_bounds_contain_every_float32_value_of_random_grammar_trees():
    """Soundness, as a property: random trees of the mutation grammar, random boxes,
    random points inside them; the compiled float32 value lies within the bounds wherever
    the evaluation flags no hazard."""
    grammar = load_grammar(TASK)
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    lanes, checked = 64, 0
    spec = jax.ShapeDtypeStruct((lanes,), jnp.float32)
    for _ in range(60):
        tree = ex.ramped_tree(rng, grammar, 4)
        function = tree_function(tree, ("ratio", "advantage"))
        try:
            jaxpr = jax.make_jaxpr(function)(spec, spec)
        except Exception:
            continue
        r_lo = np.exp(np_rng.uniform(np.log(1e-3), np.log(1e3), lanes))
        r_hi = r_lo * np.exp(np_rng.uniform(0, 1, lanes))
        a_lo = np_rng.uniform(-50, 50, lanes)
        a_hi = a_lo + np_rng.uniform(0, 5, lanes)
        try:
            (bounds,), hazard = evaluate(jaxpr, Interval(r_lo, r_hi), Interval(a_lo, a_hi))
        except NoRule:
            continue
        for _ in range(4):
            r = r_lo + np_rng.uniform(0, 1, lanes) * (r_hi - r_lo)
            a = a_lo + np_rng.uniform(0, 1, lanes) * (a_hi - a_lo)
            value = np.asarray(jax.jit(function)(r.astype(np.float32), a.astype(np.float32)))
            ok = ~np.broadcast_to(hazard, (lanes,)) & np.isfinite(value)
            lo, hi = np.broadcast_to(bounds.lo, (lanes,)), np.broadcast_to(bounds.hi, (lanes,))
            inside = (value >= lo) & (value <= hi)
            assert inside[ok].all(), (ex.describe(tree), value[ok & ~inside])
            checked += int(ok.sum())
    assert checked > 5000


# -- the runtime monitor -----------------------------------------------------------------------


def _trained_watch(drift, timesteps=20_480):
    config = preset("CartPole-v1", total_timesteps=timesteps)
    batch = lower_batch(config, Components(drift=drift), seeds=2).compile().run()
    return jax.tree.map(np.asarray, batch.output.watch["drift"])


# Trained as the sandbox trains expressions (one program for all, the interpreter at the
# plug point): the baselines, and two drifts that break a condition only at r = 1.
MONITORED = {
    **{name: TASK.baseline_source(name) for name in ("ppo", "dpo", "zero")},
    "kink": HEADER + "    return jax.nn.relu(ratio - 1.0) * jnp.abs(advantage)\n",
    "offset": HEADER + "    return (ratio - 1.0) ** 2 + 1e-2\n",
}


@pytest.fixture(scope="module")
def monitored() -> dict[str, list]:
    """Each of MONITORED's drifts -> the monitor's violations, from one compiled program."""
    inputs = tuple(TASK.inputs)
    bytecode = [expression_bytecode(s, TASK.entry_point, inputs) for s in MONITORED.values()]
    config = preset("CartPole-v1", total_timesteps=20_480)
    batch = lower_members(config, TASK.piece.plug_point, bytecode, seeds=2).compile().run()
    monitor = get_piece("drift").monitor
    return {
        name: violations(jax.tree.map(np.asarray, batch.member(i).output.watch["drift"]), monitor)
        for i, name in enumerate(MONITORED)
    }


@pytest.mark.slow
def test_the_baselines_pass_the_monitor(monitored):
    for name in ("ppo", "dpo", "zero"):
        assert monitored[name] == [], name


@pytest.mark.slow
def test_the_monitor_catches_a_drift_that_only_misbehaves_in_training():
    """Trained directly (no pre-training checks): the monitor alone must see it, and word a
    counterexample that is true of the drift as training calls it."""
    body, _ = GAMING["float32_only"]
    drift = load_entry_point(HEADER + body, "drift")
    found = dict(violations(_trained_watch(drift), get_piece("drift").monitor))
    assert "non_negative" in found, found
    text = found["non_negative"]
    assert text.startswith("negative during training: drift(") and "at update" in text
    r, a = (float(x) for x in text.split("drift(")[1].split(")")[0].split(","))
    assert SizedProbe(drift, 512).values(np.array([r]), np.array([a]))[0] < 0


@pytest.mark.slow
def test_the_monitor_sees_a_kink_and_an_offset_at_one(monitored):
    kink, offset = dict(monitored["kink"]), dict(monitored["offset"])
    assert "zero_slope_at_one" in kink and "quotient" in kink["zero_slope_at_one"], kink
    assert "zero_at_one" in offset and offset["zero_at_one"].startswith("nonzero at r=1"), offset


@pytest.mark.slow
def test_the_monitor_changes_no_training_number():
    """Probes ride in the same call but never in the loss: the trained parameters are the
    same with the monitor on and off."""
    config = preset("CartPole-v1", total_timesteps=10_240)
    drift = load_baseline("mirror_drift", "dpo")
    on = lower_batch(config, Components(drift=drift), seeds=2).compile().run().output
    off_config = preset("CartPole-v1", total_timesteps=10_240, monitor=())
    off = lower_batch(off_config, Components(drift=drift), seeds=2).compile().run().output
    for x, y in zip(jax.tree.leaves(on.params), jax.tree.leaves(off.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert off.watch == {} and on.watch["drift"]


def test_a_valid_report_says_how_it_was_established():
    certified = check_candidate(TASK, TASK.baseline_source("ppo"))
    assert certified.assurance == Assurance.CERTIFIED
    sampled = check_candidate(TASK, HEADER + "    return jnp.exp(ratio - 1.0) - ratio\n")
    assert sampled.valid and sampled.assurance == Assurance.SAMPLED
    assert sampled.to_dict()["assurance"] == "passed sampling"


HIDDEN_POCKET = (
    "    base = jnp.abs(advantage) * (ratio - 1.0) ** 2\n"
    # a factor of exactly 1 through an array constant, which intervals do not bound (it
    # could tell lanes apart): no certificate
    "    one = jnp.min(0.0 * ratio[..., None] + jnp.array([1.0, 2.0]), axis=-1)\n"
    "    bump = jnp.exp(-(((ratio - 1.0213) / 0.0003) ** 2)"
    " - ((advantage - 0.6131) / 0.002) ** 2)\n"
    "    return base - 0.3 * bump * one\n"
)


@pytest.mark.slow
def test_in_the_sandbox_the_monitor_fails_what_every_check_passed_and_spares_the_batch():
    """A pocket too narrow for the sampled checks, behind an array constant the certificate
    does not bound, where training ratios go: it passes every pre-training check ("passed
    sampling"), the monitor sees it during training and the candidate is invalid with the
    counterexample; DPO in the same batch is scored as usual, and a drift that games the
    dtype is stopped before training."""
    from harness.cascade import evaluate_batch
    from sandbox.vocabulary import Fidelity, Status

    assert _check(HIDDEN_POCKET).assurance == Assurance.SAMPLED
    sources = [
        TASK.baseline_source("dpo"),
        HEADER + HIDDEN_POCKET,
        HEADER + GAMING["float32_only"][0],
    ]
    dpo, pocket, dtype = evaluate_batch(  # a screen: a campaign's first look at a proposal
        "mirror_drift", sources, "smoke", sandbox="process", fidelity=Fidelity.SCREEN
    )
    assert dpo.status == Status.OK and dpo.fitness is not None
    assert [s.name for s in dpo.stages][-1] == "score"
    assert pocket.status == Status.INVALID, [(s.name, s.status, s.detail) for s in pocket.stages]
    failed = pocket.stages[-1]
    assert failed.name in ("trial", "full") and "negative during training: drift(" in failed.detail
    assert dtype.status == Status.INVALID and dtype.stages[-1].name == "validity"
