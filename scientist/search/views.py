"""How a proposer sees archived candidates: code, scores and, for failures, what failed."""

from archive import reads
from archive.db import Engine, transaction
from archive.schema import Candidate
from sandbox.vocabulary import Status
from scientist.proposers.base import ParentView


def views(engine: Engine, ids: list[int]) -> list[ParentView]:
    """The candidates with these ids, as a proposer sees them, in the order of `ids`."""
    if not ids:
        return []
    with transaction(engine) as session:
        rows = reads.candidates_by_id(session, ids)
    return [parent_view(rows[i]) for i in ids if i in rows]


def parent_view(candidate: Candidate) -> ParentView:
    return ParentView(
        id=candidate.id,
        code=candidate.code or "",
        status=candidate.status,
        fitness=candidate.fitness,
        origin=candidate.origin,
        summary=score_summary(candidate),
        error=failure_summary(candidate),
    )


def score_summary(candidate: Candidate) -> str:
    lines = []
    for split, envs in (candidate.per_env or {}).items():
        for env_id, result in envs.items():
            normalised = result.get("normalised", {})
            lines.append(
                f"{split} {env_id}: normalised IQM {normalised.get('iqm', float('nan')):.3f}, "
                f"return IQM {result.get('return_iqm', float('nan')):.2f}"
            )
    return "\n".join(lines)


def failure_summary(candidate: Candidate) -> str:
    """The failing stage and its detail, with the check counterexamples when there are any."""
    if candidate.status in (Status.OK, Status.PENDING):
        return ""
    stage = next((s for s in candidate.stages if s.get("status") != Status.OK), None)
    parts = [
        f"status {candidate.status}"
        + (f" at stage {stage['name']}: {stage.get('detail', '')}" if stage else "")
    ]
    for check in (candidate.checks or {}).get("checks", []):
        if not check.get("passed", True):
            example = check.get("counterexample")
            parts.append(
                f"check {check.get('name')}: {check.get('detail', '')}"
                + (f" (counterexample: {example})" if example else "")
            )
    return "\n".join(parts)[:3000]
