"""Chat messages for the llm proposer's edit operators, rendered from the templates in the
top-level prompts/ folder (or the folder named by SCIENTIST_PROMPTS_DIR).

The system message carries the task's rules (signature, inputs, allowed imports, validity
conditions, answer format); the user message carries the task and the operator's material.
"""

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from sandbox.checks.static import ALLOWED_IMPORTS, MAX_SOURCE_BYTES  # constants only; no jax here
from sandbox.tasks import TaskSpec
from scientist.proposers.base import ParentView

OPERATORS = ("rewrite", "diff", "crossover", "repair")
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


def prompts_dir() -> Path:
    return Path(os.environ.get("SCIENTIST_PROMPTS_DIR") or DEFAULT_PROMPTS_DIR)


@functools.cache
def _environment(folder: Path) -> jinja2.Environment:
    # StrictUndefined: a template naming something the code does not pass fails loudly.
    # Sandboxed: the prompts folder may be anyone's (SCIENTIST_PROMPTS_DIR), and a template
    # must not reach Python internals through the objects it is given.
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **context) -> str:
    return _environment(prompts_dir()).get_template(name).render(**context).strip() + "\n"


def system_message(task: TaskSpec, *, edit_format: bool = False) -> str:
    return render(
        "system.j2",
        task=task,
        allowed_imports=sorted(ALLOWED_IMPORTS),
        max_source_bytes=MAX_SOURCE_BYTES,
        edit_format=edit_format,
    )


def render_messages(
    operator: str,
    task: TaskSpec,
    *,
    parents: Sequence[ParentView] = (),
    inspirations: Sequence[ParentView] = (),
    failure: ParentView | None = None,
) -> list[dict[str, str]]:
    """The [system, user] messages for one operator.

    rewrite: parents[0] if any (else the task alone) and the inspirations;
    diff: parents[0]; crossover: parents[0] and parents[1]; repair: the failure.
    """
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; known: {', '.join(OPERATORS)}")
    if operator in ("diff", "crossover") and len(parents) < (2 if operator == "crossover" else 1):
        raise ValueError(
            f"{operator} needs {'two parents' if operator == 'crossover' else 'a parent'}"
        )
    if operator == "repair" and failure is None:
        raise ValueError("repair needs a failed candidate")
    material = {
        "rewrite": dict(parent=parents[0] if parents else None, inspirations=list(inspirations)),
        "diff": dict(parent=parents[0] if parents else None),
        "crossover": dict(first=parents[0], second=parents[1]) if len(parents) >= 2 else {},
        "repair": dict(failure=failure),
    }[operator]
    user = render("task.j2", task=task) + "\n" + render(f"{operator}.j2", task=task, **material)
    return [
        {"role": "system", "content": system_message(task, edit_format=operator == "diff")},
        {"role": "user", "content": user},
    ]
