"""Both sandbox backends work wherever the interpreter lives: a virtual environment inside
the checkout (`python -m venv .venv`, the README's layout, which the code snapshot mounted
over the repository used to hide), one outside it, one reached through a symlink. Each
layout is a real venv made from the base interpreter (here under a 0700 home) in a copy of
this working tree in a 0700 temporary directory, with the project installed into it by pip
(tests/venvs.py). Slow: four smoke evaluations."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from venvs import copy_working_tree, make_venv, run_from

from harness.backends import SandboxUnavailable

pytestmark = pytest.mark.slow

DPO = "task_templates/mirror_drift/baselines/dpo.py"


def docker_or_skip() -> None:
    from harness.backends.docker import DockerBackend

    try:
        backend = DockerBackend()
    except SandboxUnavailable as error:
        pytest.skip(f"Docker backend unavailable here: {error}")
    backend.preflight()  # an engine answers: a sandbox that cannot start in it is a failure


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (checkout, venv): inside the checkout and outside it."""
    root = tmp_path_factory.mktemp("layouts")
    root.chmod(0o700)
    inside = copy_working_tree(root / "inside")
    outside = copy_working_tree(root / "outside")
    return {
        "venv inside the checkout": (inside, make_venv(inside / ".venv", inside)),
        "venv outside the checkout": (outside, make_venv(root / "elsewhere" / "venv", outside)),
    }


def evaluate(checkout: Path, venv: Path, sandbox: str) -> subprocess.CompletedProcess:
    return run_from(
        venv,
        checkout,
        "evaluate",
        "--task",
        "mirror_drift",
        DPO,
        "--budget",
        "smoke",
        "--sandbox",
        sandbox,
        "--json",
    )


@pytest.fixture(scope="module")
def evaluations(layouts):
    docker_or_skip()
    runs = [(name, sandbox) for name in layouts for sandbox in ("process", "docker")]
    with ThreadPoolExecutor(
        max_workers=2
    ) as pool:  # two at a time: compiling is mostly one core each
        done = pool.map(lambda run: evaluate(*layouts[run[0]], run[1]), runs)
        return dict(zip(runs, done))


@pytest.mark.parametrize("sandbox", ["process", "docker"])
@pytest.mark.parametrize("layout", ["venv inside the checkout", "venv outside the checkout"])
def test_dpo_evaluates_ok_from_each_layout(evaluations, layouts, layout, sandbox):
    result = evaluations[(layout, sandbox)]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["status"] == "ok" and data["backend"] == sandbox and data["fitness"] > 0.3
    assert set(data["per_env"]["meta_train"]) == {"CartPole-v1"} and set(
        data["per_env"]["meta_test"]
    ) == {"Acrobot-v1"}
    assert [s["name"] for s in data["stages"]] == [
        "static",
        "trace",
        "validity",
        "trial",
        "full",
        "score",
    ]


def test_a_venv_behind_a_symlink_passes_both_preflights(layouts, tmp_path):
    """`.venv` a symlink to a venv elsewhere: Python knows it by the link's path, the files
    live at the target's; both must be reachable in the sandbox."""
    docker_or_skip()
    checkout, venv = layouts["venv outside the checkout"]
    link = checkout / ".venv"
    link.symlink_to(venv)
    probe = (
        "from harness.backends import get_backend\n"
        "from harness.backends.filesystem import interpreter_mounts\n"
        "print(sorted(map(str, interpreter_mounts())))\n"
        "for name in ('process', 'docker'):\n"
        "    get_backend(name)\n"
        "    print(name, 'ok')\n"
    )
    try:
        result = subprocess.run(
            [link / "bin" / "python", "-c", probe],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        link.unlink()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (
        str(link) in result.stdout
        and "process ok" in result.stdout
        and "docker ok" in result.stdout
    )
