"""Task folders: specs, templates and baselines; adding a folder adds a task."""

import shutil

import pytest

from sandbox import tasks
from sandbox.checks.pipeline import check_candidate
from sandbox.tasks import TaskError, list_tasks, load_task


def test_the_three_tasks_are_listed_with_their_splits():
    assert {"mirror_drift", "value_loss", "optimizer"} <= set(list_tasks())
    drift = load_task("mirror_drift")
    assert drift.split("smoke").meta_train == ("CartPole-v1",) and drift.split(
        "smoke"
    ).meta_test == ("Acrobot-v1",)
    assert drift.split("paper").meta_train == ("Breakout-MinAtar",)
    assert set(drift.split("quick").meta_test) == {
        "Asterix-MinAtar",
        "Freeway-MinAtar",
        "SpaceInvaders-MinAtar",
    }
    assert set(drift.baseline_names) == {"ppo", "dpo", "zero"}
    assert set(load_task("value_loss").baseline_names) == {"squared_error", "huber"}
    assert load_task("optimizer").baseline_names == ("adam",)


@pytest.mark.parametrize(
    "task, baseline",
    [
        ("mirror_drift", "ppo"),
        ("mirror_drift", "dpo"),
        ("mirror_drift", "zero"),
        ("value_loss", "squared_error"),
        ("value_loss", "huber"),
        ("optimizer", "adam"),
    ],
)
def test_every_baseline_is_valid(task, baseline):
    spec = load_task(task)
    report = check_candidate(spec, spec.baseline_source(baseline))
    assert report.valid, [(c.name, c.detail) for c in report.failures]


def test_template_renders_a_body_or_a_full_source():
    spec = load_task("mirror_drift")
    module = spec.render(body="return jnp.maximum(jnp.abs(ratio - 1.0) - 0.2, 0.0) ** 2")
    assert "def drift(ratio, advantage):\n    return jnp.maximum" in module
    assert check_candidate(spec, module).valid
    source = spec.baseline_source("dpo")
    assert spec.render(source=source).strip() == source.strip()
    with pytest.raises(TaskError):
        spec.render()


def test_adding_a_folder_adds_a_task(tmp_path, monkeypatch):
    shutil.copytree(tasks.TASKS_DIR / "mirror_drift", tmp_path / "my_drift")
    spec_file = tmp_path / "my_drift" / "task.toml"
    spec_file.write_text(
        spec_file.read_text().replace('name = "mirror_drift"', 'name = "my_drift"')
    )
    monkeypatch.setattr(tasks, "TASKS_DIR", tmp_path)
    tasks.load_task.cache_clear()
    try:
        assert list_tasks() == ["my_drift"]
        spec = load_task("my_drift")
        assert check_candidate(spec, spec.baseline_source("ppo")).valid
        with pytest.raises(TaskError, match="unknown task"):
            load_task("mirror_drift")
        spec_file.write_text(  # a split of the task's own for one budget
            spec_file.read_text() + '\n[splits.smoke]\nmeta_train = ["Pong"]\nmeta_test = []\n'
        )
        tasks.load_task.cache_clear()
        with pytest.raises(TaskError, match="Pong is not covered by budget smoke"):
            load_task("my_drift")
    finally:
        tasks.load_task.cache_clear()
