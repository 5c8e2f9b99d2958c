"""Discovery tasks: one folder under task_templates/ each, found by listing the folder.

A task folder holds `task.toml` (the spec, naming the kind of piece it searches for: a
module of sandbox/pieces), `candidate.py.j2` (renders a candidate module from a function
body or a full source) and `baselines/*.py` (candidates in the same form). Adding a folder
adds a task; nothing else changes.
"""

import functools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from sandbox.budgets import BUDGETS, get_budget
from sandbox.pieces import Piece, UnknownPiece, get_piece
from sandbox.vocabulary import META_TEST, META_TRAIN, Fidelity

TASKS_DIR = Path(
    os.environ.get("SCIENTIST_TASKS_DIR", Path(__file__).resolve().parent.parent / "task_templates")
)
# A task is named by its folder under TASKS_DIR: no separators, no `..`, never a path (the name
# may come from a shared archive; another folder of tasks is chosen with SCIENTIST_TASKS_DIR).
TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class TaskError(ValueError):
    pass


@dataclass(frozen=True)
class Split:
    meta_train: tuple[str, ...]
    meta_test: tuple[str, ...]

    def trained(self, fidelity: Fidelity) -> dict[str, tuple[str, ...]]:
        """The environments a round at `fidelity` trains, by part of the split."""
        if fidelity is Fidelity.SCREEN:
            return {META_TRAIN: self.meta_train}
        return {META_TRAIN: self.meta_train, META_TEST: self.meta_test}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    description: str
    piece: Piece  # the kind of piece a candidate is
    entry_point: str
    prototype: str  # how the entry point is called, e.g. drift(ratio, advantage)
    normaliser: str
    budgets: tuple[str, ...]
    inputs: dict[str, str]
    output: dict[str, str]
    splits: dict[str, Split]
    folder: Path

    def split(self, budget: str) -> Split:
        """The meta-train / meta-test environments at a budget: the task's own for that
        budget, else its default, else the budget's (sandbox/budgets.py)."""
        if budget not in self.budgets:
            raise TaskError(
                f"task {self.name} does not run at budget {budget!r}; "
                f"it supports {', '.join(self.budgets)}"
            )
        if budget in self.splits or "default" in self.splits:
            return self.splits.get(budget, self.splits.get("default"))
        entry = get_budget(budget)
        return Split(entry.meta_train, entry.meta_test)

    @property
    def baseline_names(self) -> tuple[str, ...]:
        return tuple(sorted(p.stem for p in (self.folder / "baselines").glob("*.py")))

    def baseline_source(self, name: str) -> str:
        path = self.folder / "baselines" / f"{name}.py"
        if not path.is_file():
            raise TaskError(
                f"task {self.name} has no baseline {name!r}; "
                f"it has {', '.join(self.baseline_names)}"
            )
        return path.read_text()

    def template(self, name: str) -> jinja2.Template:
        """One of the task folder's templates, in the sandboxed environment."""
        return _templates(self.folder).get_template(name)

    def render(self, *, body: str | None = None, source: str | None = None) -> str:
        """A candidate module from the body of the entry point, or from a full source."""
        if (body is None) == (source is None):
            raise TaskError("render takes exactly one of body= or source=")
        template = self.template("candidate.py.j2")
        return template.render(body=body.strip("\n") if body is not None else None, source=source)


@functools.cache
def _templates(folder: Path) -> jinja2.Environment:
    # Sandboxed: a template may not reach Python internals (a task folder is data, not code).
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@functools.cache
def load_baseline(task: str, name: str):
    """A task's baseline candidate, loaded through the same path as any candidate."""
    from sandbox.candidate import load_entry_point  # candidate loading needs the checker

    spec = load_task(task)
    return load_entry_point(
        spec.baseline_source(name), spec.entry_point, filename=f"{task}/baselines/{name}.py"
    )


def list_tasks() -> list[str]:
    return sorted(
        p.parent.name for p in TASKS_DIR.glob("*/task.toml") if TASK_NAME.fullmatch(p.parent.name)
    )


@functools.cache
def load_task(name: str) -> TaskSpec:
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        raise TaskError(
            f"invalid task name {name!r}: a task is the name of a folder under {TASKS_DIR} "
            f"(letters, digits, _); available: {', '.join(list_tasks())}"
        )
    path = TASKS_DIR / name / "task.toml"
    if not path.is_file():
        raise TaskError(f"unknown task {name!r}; available: {', '.join(list_tasks())}")
    try:
        raw = tomllib.loads(path.read_text())
        spec = TaskSpec(
            name=raw["name"],
            summary=raw["summary"],
            description=raw["description"].strip(),
            piece=get_piece(raw["piece"]),
            entry_point=raw["entry_point"],
            prototype=raw["prototype"],
            normaliser=raw["normaliser"],
            budgets=tuple(raw.get("budgets", BUDGETS)),
            inputs=dict(raw["inputs"]),
            output=dict(raw["output"]),
            splits={
                k: Split(tuple(v["meta_train"]), tuple(v["meta_test"]))
                for k, v in raw.get("splits", {}).items()
            },
            folder=path.parent,
        )
    except UnknownPiece as error:
        raise TaskError(f"{path}: {error}") from None
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as error:
        raise TaskError(f"{path}: malformed task spec: {error!r}") from error
    _validate(spec, path)
    return spec


def _validate(spec: TaskSpec, path: Path) -> None:
    if spec.name != path.parent.name:
        raise TaskError(f"{path}: name {spec.name!r} differs from its folder {path.parent.name!r}")
    if len(spec.inputs) != spec.piece.arity:
        raise TaskError(
            f"{path}: a {spec.piece.kind} takes {spec.piece.arity} inputs, "
            f"[inputs] names {len(spec.inputs)}"
        )
    for budget_name in spec.budgets:
        budget = get_budget(budget_name)
        split = spec.split(budget_name)
        if not split.meta_train:
            raise TaskError(f"{path}: budget {budget_name} has no meta-train environment")
        for env_id in split.meta_train + split.meta_test:
            if env_id not in budget.env_ids:
                raise TaskError(
                    f"{path}: {env_id} is not covered by budget {budget_name} "
                    f"({', '.join(budget.env_ids)})"
                )
