"""Batched evaluation (`evaluate_batch`, process backend): members of one sandbox run get
the verdicts and numbers they get alone, whatever else is in the batch."""

import json
from pathlib import Path

import pytest

from harness.backends import get_backend
from harness.cascade import evaluate_batch, evaluate_candidate
from sandbox.tasks import load_task
from sandbox.vocabulary import Fidelity
from tests.test_hostile_candidates import HOSTILE, LIMITS

TASK = load_task("mirror_drift")
DPO = TASK.baseline_source("dpo")
EVAL_SEED = 1234  # the trusted side fixes it here so that two scorer runs are comparable


def numbers(evaluation, parts=("meta_train", "meta_test")):
    """Everything a result says about training and scoring, per environment."""
    return {
        env: (entry["returns"], entry["learning_curve"])
        for part in parts
        for env, entry in evaluation.per_env[part].items()
    }


def screened(evaluation):
    """The meta-train numbers: all a screen trains (Fidelity.SCREEN). The isolation tests
    screen, the cheapest sandbox run that still trains and scores every member (the full
    stage trains through the trial's code; test_further_blocks_... runs it on every split)."""
    return numbers(evaluation, ("meta_train",))


@pytest.fixture(scope="module")
def alone():
    result = evaluate_candidate(
        "mirror_drift", DPO, "smoke", sandbox="process", eval_seed=EVAL_SEED
    )
    assert result.status == "ok", result.stages
    return result


# Not an expression of the mutation grammar (log1p): it runs as code, the others as bytecode.
CODE = (
    "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return jnp.abs(advantage) * jnp.log1p((ratio - 1.0) ** 2)\n"
)


def test_a_member_scores_in_a_batch_what_it_scores_alone(alone):
    """DPO is an expression (run by the interpreter), CODE is not (its own branch): both get
    in a mixed batch (screened) exactly what they get alone. Alone, DPO is a certified
    expression and trains unmonitored; beside code the batch is monitored: the probes never
    change a number."""
    ppo = TASK.baseline_source("ppo")
    screen = {"sandbox": "process", "eval_seed": EVAL_SEED, "fidelity": Fidelity.SCREEN}
    code_alone = evaluate_candidate("mirror_drift", CODE, "smoke", **screen)
    batch = evaluate_batch("mirror_drift", [ppo, CODE, DPO], "smoke", **screen)
    assert [e.status for e in batch] == ["ok", "ok", "ok"]
    assert screened(batch[2]) == screened(alone)  # same seeds: the same floats, not just close
    assert screened(batch[1]) == screened(code_alone)
    assert batch[2].fitness == alone.fitness
    assert "run as data" in batch[2].stages[1].detail
    assert "run as data" not in batch[1].stages[1].detail
    # Common random numbers, on record: every member trained and was scored on the same seeds.
    seeds = {e.per_env["meta_train"]["CartPole-v1"]["seeds"]["training"] for e in batch}
    assert seeds == {0} and alone.per_env["meta_test"]["Acrobot-v1"]["seeds"] == {
        "training": 0,
        "runs": 2,
        "evaluation": EVAL_SEED,
    }
    assert screened(batch[0]) != screened(batch[2])  # and the members really differ
    trial = next(s for s in batch[2].stages if s.name == "trial")
    assert "one program for 3" in trial.detail and "unmonitored" not in trial.detail
    smoke_alone = next(s for s in alone.stages if s.name == "trial")
    assert "unmonitored: certified expressions" in smoke_alone.detail
    # Each keeps its own log lines: the others' tags never show.
    assert "[member" not in batch[0].log_tail and "trained CartPole-v1" in batch[0].log_tail


MIXED = [
    "reads_env_vars",  # rejected before the sandbox
    "system_exit",  # ends the shared process in its trace
    "infinite_loop",  # hangs the shared process: the batch is split
    "memory_bomb",
    "nan_output",
    "python_branch",
    "recursion",
    "explodes_in_training",  # overflows float32: invalid in the float32 checks
]


def tamper(monkeypatch, before=None, after=None):
    """Every sandbox run of the process backend from now on: `before(scratch, request)` done
    to its scratch directory before the sandboxed process starts, `after(scratch, request)`
    once it has ended. The test acts for a member that could write files where it likes:
    candidate code can write none (the static checks), but isolation must not rest on that."""
    backend = get_backend("process")
    run = backend.run

    def tampered(sandbox_run):
        request = json.loads(Path(sandbox_run.args[-1]).read_text())
        if before is not None:
            before(sandbox_run.scratch, request)
        outcome = run(sandbox_run)
        if after is not None:
            after(sandbox_run.scratch, request)
        return outcome

    monkeypatch.setattr(backend, "run", tampered)


# A member's files under the old layout, where members were out/0, out/1, ...
OLD_LAYOUT = ("stages.jsonl", "checks.json", "signature.json", "CartPole-v1.npz", "block-0")


def every_guessable_path(scratch, request):
    """What a member that writes files can aim at without knowing the tokens: every file of
    every member under the old layout, the batch's records and the scorer's request where
    they were, made directories (as XLA's xla_dump_to does with a path it is given: the
    attack that once failed an honest member with IsADirectoryError)."""
    for index in range(len(request["members"])):
        for name in OLD_LAYOUT:
            (scratch / "out" / str(index) / name).mkdir(parents=True)
    (scratch / "out" / "stages.jsonl").mkdir()
    (scratch / "score_request.json").mkdir()


def test_hostile_members_do_not_touch_the_others(alone, monkeypatch):
    """Members of the hostile suite mixed into one batch with the DPO baseline, and every
    path a member could guess in another's place taken before each run: each gets the
    verdict it gets alone, and DPO gets exactly its result alone."""
    tamper(monkeypatch, before=every_guessable_path)
    names = [n for n in MIXED if n in HOSTILE]
    sources = [HOSTILE[n][0] for n in names]
    batch = evaluate_batch(
        "mirror_drift",
        [*sources[:4], DPO, *sources[4:]],
        "smoke",
        sandbox="process",
        stage_seconds=LIMITS,
        eval_seed=EVAL_SEED,
        fidelity=Fidelity.SCREEN,
    )
    dpo = batch.pop(4)
    got = {n: (e.status, e.fitness) for n, e in zip(names, batch, strict=True)}
    assert got == {n: (HOSTILE[n][1], None) for n in names}, [
        (n, e.status, [(s.name, s.status, s.detail[:120]) for s in e.stages])
        for n, e in zip(names, batch, strict=True)
    ]
    assert dpo.status == "ok" and screened(dpo) == screened(alone)


def test_a_member_whose_own_outputs_are_tampered_with_fails_alone(alone, monkeypatch):
    """Outputs no honest stage leaves, in members' own out directories (the test acts for
    whoever could: a member's own code with a way to write files): a directory where a
    file goes, the out directory a link to DPO's, a record file a link to a device, and,
    after a member trained, its artifact a link to DPO's artifact (DPO's score as its own).
    Each fails alone with what was wrong; DPO, beside them, gets exactly its result alone."""
    ppo = TASK.baseline_source("ppo")

    def out(request, index):
        return Path(request["members"][index]["out"])

    def before(scratch, request):
        (out(request, 1) / "checks.json").mkdir()
        out(request, 2).rmdir()
        out(request, 2).symlink_to(out(request, 0))
        (out(request, 3) / "stages.jsonl").symlink_to("/dev/zero")

    def after(scratch, request):
        artifact = out(request, 4) / "CartPole-v1.npz"
        artifact.unlink()
        artifact.symlink_to(out(request, 0) / "CartPole-v1.npz")

    tamper(monkeypatch, before, after)
    dpo, *tampered = evaluate_batch(
        "mirror_drift",
        [DPO, ppo, ppo, ppo, ppo],
        "smoke",
        sandbox="process",
        eval_seed=EVAL_SEED,
        fidelity=Fidelity.SCREEN,
    )
    assert dpo.status == "ok" and screened(dpo) == screened(alone)
    assert [e.status for e in tampered] == ["failed"] * 4
    assert all(e.fitness is None and e.stages[-1].name == "sandbox" for e in tampered)
    details = [e.stages[-1].detail for e in tampered]
    assert "checks.json is a directory" in details[0]
    assert "its out directory is a symbolic link" in details[1]
    assert "stages.jsonl is a symbolic link" in details[2]
    assert "CartPole-v1.npz is a symbolic link" in details[3]
    # Those tampered with before the run ran no stage; the last trained, and only then failed.
    assert [s.name for s in tampered[0].stages] == ["static", "sandbox"]
    assert [s.name for s in tampered[3].stages][-3:] == ["trial", "full", "sandbox"]


def test_a_member_may_not_change_what_the_others_train_with():
    """Members share a process: process-wide registries are out of a candidate's reach, and
    a stage that changes JAX's settings anyway fails and has them restored."""
    import jax

    from sandbox.checks.pipeline import static_check
    from sandbox.stages import StageFailure, settings_kept

    registers = (
        "import jax\n\njax.tree_util.register_static(float)\n\n"
        "def drift(ratio, advantage):\n    return 0.0 * ratio\n"
    )
    assert not static_check(registers).passed
    before = jax.config.jax_default_matmul_precision
    with pytest.raises(StageFailure, match="process-wide settings"):
        with settings_kept():
            jax.config.update("jax_default_matmul_precision", "bfloat16")
    assert jax.config.jax_default_matmul_precision == before


def test_an_expression_runs_as_data_and_computes_what_its_module_computes():
    """Bytecode of the mutation proposer's candidates: the interpreter, as training and as
    the validity checks call it, and the executed module agree in value and in the derivative
    training uses."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.campaign import gp_candidates
    from sandbox.candidate import load_entry_point
    from sandbox.training.bytecode import bytecode_function, expression_bytecode, interpret

    inputs = tuple(TASK.inputs)
    ratio = np.geomspace(0.05, 5.0, 257).astype(np.float32)
    advantage = np.linspace(-4.0, 4.0, 257).astype(np.float32)
    traced = jax.jit(interpret)  # traced, as in training; the bytecode is an argument
    for source in [*gp_candidates(12, seed=3), DPO]:
        bytecode = expression_bytecode(source, TASK.entry_point, inputs)
        assert bytecode is not None, source
        module = load_entry_point(source, TASK.entry_point)
        for function in (
            lambda r, a: traced(bytecode.slot(), r, a),
            bytecode_function(bytecode),  # what the validity checks probe
        ):
            want, got = module(ratio, advantage), function(ratio, advantage)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5, equal_nan=True)
            slope = jax.grad(lambda r, f=function: jnp.sum(f(r, advantage)))(ratio)
            expected = jax.grad(lambda r: jnp.sum(module(r, advantage)))(ratio)
            np.testing.assert_allclose(slope, expected, rtol=2e-4, atol=1e-4, equal_nan=True)


def test_an_expression_is_probed_in_one_call_with_the_slopes_of_one_point_at_a_time():
    """The validity checks take an expression's bytecode's slope as the gradient of one summed
    call (elementwise by construction); a function of unknown make gets one call per point.
    Both give the same slopes, kinks and clipped regions included."""
    import jax
    import numpy as np

    from benchmarks.campaign import gp_candidates
    from sandbox.pieces.base import JaxProbe
    from sandbox.training.bytecode import bytecode_function, expression_bytecode

    inputs = tuple(TASK.inputs)
    rng = np.random.default_rng(0)
    ratio = np.concatenate([np.exp(rng.normal(0.0, 0.7, 300)), [0.8, 1.0, 1.2, 2.0]])
    advantage = np.concatenate([rng.normal(0.0, 2.0, 300), [0.0, 0.0, 1.0, -1.0]])
    for source in [*gp_candidates(3, seed=7), DPO]:
        function = bytecode_function(expression_bytecode(source, TASK.entry_point, inputs))
        with jax.enable_x64(True):
            summed = JaxProbe(function)
            pointwise = JaxProbe(lambda r, a, f=function: f(r, a))
            assert summed.elementwise and not pointwise.elementwise
            np.testing.assert_array_equal(
                summed.slope(ratio, advantage), pointwise.slope(ratio, advantage)
            )


@pytest.mark.parametrize(
    "source",
    [
        # Module-level work the tree would not do: these run as code, with its verdicts.
        "x = 0\nwhile True:\n    x += 1\n\ndef drift(ratio, advantage):\n    return ratio - 1.0\n",
        "import jax\n\n@jax.jit\ndef drift(ratio, advantage):\n    return (ratio - 1.0) ** 2\n",
        "def drift(advantage, ratio):\n    return (ratio - 1.0) ** 2\n",  # inputs swapped
        "def drift(ratio: float, advantage):\n    return (ratio - 1.0) ** 2\n",
        "import jax.numpy as jnp\njnp.zeros(3)\n\ndef drift(ratio, advantage):\n"
        "    return (ratio - 1.0) ** 2\n",
        "def helper(x):\n    return x\n\ndef drift(ratio, advantage):\n    return ratio * 0.0\n",
    ],
)
def test_only_a_module_that_is_exactly_an_expression_runs_as_data(source):
    from sandbox.training.bytecode import expression_bytecode

    assert expression_bytecode(source, TASK.entry_point, tuple(TASK.inputs)) is None


def test_a_bytecode_batch_reuses_its_exported_trainer_and_trains_the_same(tmp_path):
    """The trainer of a bytecode batch is exported once (to the directory only runs
    without candidate code write) and loaded by the next batch of up to its 8 member slots,
    whichever expressions it holds and however many; trained through it, the numbers are
    those of tracing it afresh. Sandboxes that need it at once (a campaign's workers
    starting together) take turns on its lock, so the later ones read what the first
    compiled: here the lock is held as another process would hold it, and compiling waits."""
    import threading

    import jax
    import numpy as np

    from benchmarks.campaign import gp_candidates
    from sandbox.training.bytecode import expression_bytecode
    from sandbox.training.config import preset
    from sandbox.training.run import held, lower_members

    config = preset("CartPole-v1", total_timesteps=4 * 512)
    inputs = tuple(TASK.inputs)
    first, second = (
        [expression_bytecode(s, TASK.entry_point, inputs) for s in gp_candidates(n, seed=seed)]
        for n, seed in ((2, 5), (3, 6))
    )
    plug = TASK.piece.plug_point

    def trained(programs, exported=None):
        lowered = lower_members(config, plug, programs, seeds=2, seed=3, exported=exported)
        return jax.tree.leaves(lowered.compile().run().output)

    def export(programs, cache):  # lowering alone writes (or reads) the exported trainer
        lower_members(config, plug, programs, seeds=2, seed=3, exported=cache)

    cache = tmp_path / "exported"
    export(first, cache)
    (file,) = cache.glob("*.jax-exported")
    written = file.stat().st_mtime_ns
    # another batch, of another size: loaded, and compiled once its lock is free
    lowered = lower_members(config, plug, second, seeds=2, seed=3, exported=cache)
    assert lowered.lock == file.with_suffix(".lock")
    compiled = []
    with held(lowered.lock):  # a second open file: flock makes it wait as another process
        compiling = threading.Thread(target=lambda: compiled.append(lowered.compile()))
        compiling.start()
        compiling.join(timeout=3)
        assert compiling.is_alive() and not compiled
    compiling.join(timeout=300)
    through_export = jax.tree.leaves(compiled[0].run().output)
    assert [p.name for p in cache.glob("*.jax-exported")] == [file.name]
    assert file.stat().st_mtime_ns == written
    for got, want in zip(through_export, trained(second), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    file.write_bytes(b"not an exported program")  # unreadable: exported again, not an error
    export(first, cache)
    assert file.stat().st_size > 100


def test_an_expression_checked_once_is_not_checked_again_in_a_run_without_code():
    """A run of expressions alone keeps each one's check report beside its programs (only
    such runs write there) and the next such run reads it back: the same report, the stage
    saying so. The expression is new to this machine (a random constant)."""
    import random

    source = (
        f"def drift(ratio, advantage):\n    return {random.uniform(1, 2):.12f} * "
        "(ratio - 1.0) ** 2\n"
    )

    def validity(evaluation):
        assert evaluation.status == "ok", evaluation.stages
        (stage,) = [s for s in evaluation.stages if s.name == "validity"]
        return stage.detail, evaluation.checks

    (first, checks), (second, again) = (
        validity(
            evaluate_batch(
                TASK.name, [source], "smoke", sandbox="process", fidelity=Fidelity.SCREEN
            )[0]
        )
        for _ in range(2)
    )
    assert "as checked before" not in first and "as checked before" in second
    assert again == checks and checks["assurance"] == "certified"


def test_further_blocks_of_seeds_train_in_one_run_as_each_block_alone(alone):
    """Re-evaluation trains several blocks of seeds in one sandbox run (one check, one compile
    per environment): each block's numbers are those of that block trained alone, here DPO's
    on seed 0 as the second block. Members that never train get their verdict on every block."""
    negative = "def drift(ratio, advantage):\n    return ratio - 1.0\n"
    rejected = "import os\n\ndef drift(ratio, advantage):\n    return os.getpid() * 0.0\n"
    first = (7, EVAL_SEED + 1)
    batch = evaluate_batch(
        "mirror_drift",
        [DPO, negative, rejected],
        "smoke",
        sandbox="process",
        seed=first[0],
        eval_seed=first[1],
        further_blocks=[(0, EVAL_SEED)],
    )
    dpo, invalid, refused = batch
    assert [len(e.blocks) for e in batch] == [2, 2, 2]
    assert [b.status for b in dpo.blocks] == ["ok", "ok"]
    assert numbers(dpo.blocks[1]) == numbers(alone)  # the same floats as the run of its own
    assert dpo.blocks[1].fitness == alone.fitness
    assert numbers(dpo.blocks[0]) == numbers(dpo) != numbers(alone)  # other seeds, other numbers
    seeds = [b.per_env["meta_train"]["CartPole-v1"]["seeds"] for b in dpo.blocks]
    assert [(s["training"], s["evaluation"]) for s in seeds] == [first, (0, EVAL_SEED)]
    assert "2 blocks of seeds" in next(s.detail for s in dpo.stages if s.name == "full")
    assert [b.status for b in invalid.blocks] == [invalid.status] * 2 == ["invalid"] * 2
    assert [b.status for b in refused.blocks] == ["rejected"] * 2
    assert all(b.fitness is None and not b.blocks for b in invalid.blocks + refused.blocks)
    assert sum(b.seconds for b in dpo.blocks) == pytest.approx(dpo.seconds)
