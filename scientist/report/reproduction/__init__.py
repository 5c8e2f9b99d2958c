"""What PPO, DPO and the zero drift score at a budget, trained on the same seeds: the context
a report puts its discoveries in. Recorded per budget by `python -m benchmarks.reproduce
--budget NAME --save scientist/report/reproduction/NAME.json` (each file names its command)."""

import json
from dataclasses import dataclass
from pathlib import Path

from sandbox.fitness import Estimate, iqm_estimate, paired_difference

REPRODUCTION = Path(__file__).parent
REFERENCE = "ppo"


@dataclass(frozen=True)
class Row:
    label: str  # an environment, or the mean over them
    iqm: dict[str, Estimate]  # drift -> IQM over seeds (mean over environments)
    versus: dict[str, Estimate]  # drift -> paired difference from PPO


@dataclass(frozen=True)
class Reproduction:
    budget: str
    seeds: int
    command: str
    drifts: tuple[str, ...]
    rows: tuple[Row, ...]


def table(scores: dict[str, dict[str, list[float]]]) -> tuple[Row, ...]:
    """Per environment and, for several, the mean over them: each drift's IQM and its paired
    difference from PPO, from per-seed scores (drift -> env -> scores, seed i paired)."""
    drifts = list(scores)
    envs = list(scores[drifts[0]])

    def row(label: str, env_ids: list[str]) -> Row:
        strata = {d: [scores[d][e] for e in env_ids] for d in drifts}
        return Row(
            label,
            {d: iqm_estimate(strata[d]) for d in drifts},
            {
                d: paired_difference(strata[d], strata[REFERENCE])
                for d in drifts
                if d != REFERENCE and REFERENCE in strata
            },
        )

    rows = [row(e, [e]) for e in envs]
    if len(envs) > 1:
        rows.append(row("mean over environments", envs))
    return tuple(rows)


def recorded(budget: str) -> Reproduction | None:
    """The recorded reproduction at this budget, or None where none was recorded."""
    path = REPRODUCTION / f"{budget}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Reproduction(
        data["budget"], data["seeds"], data["command"], tuple(data["scores"]), table(data["scores"])
    )
