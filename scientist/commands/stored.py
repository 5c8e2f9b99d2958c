"""The shapes in which the archive's writers store the JSON values the commands print.

A value in another shape (a hand-edited archive, another program's rows, a writer's bug)
would crash the printing code half-way; it is checked here first and shown as empty, with a
note saying which value could not be read. Strict: a value printed as a number is one.
"""

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from archive.schema import Campaign, Candidate

NOTE_CHARS = 120  # of a validation error quoted in a note


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True)  # extra keys are ignored: newer writers add some


class Stage(_Shape):  # harness.cascade.StageRecord
    name: str
    status: str
    seconds: float
    detail: str = ""


class Check(_Shape):  # sandbox.checks.report.CheckResult
    name: str = ""
    passed: bool = True
    detail: str = ""


class Checks(_Shape):  # sandbox.checks.report.CheckReport.to_dict
    checks: list[Check] = []


class Normalised(_Shape):  # harness.scorer: one environment's normalised scores
    iqm: float = float("nan")
    ci_low: float | None = None
    ci_high: float | None = None
    scores: list[float] | None = None


class EnvResult(_Shape):
    normalised: Normalised = Normalised()
    return_iqm: float | None = None


class SummaryConfig(_Shape):  # what scientist.campaign.display.campaign_summary reads
    generations: int
    islands: int
    population: int
    workers: int
    batch: int | None = None  # None: chosen by the executor
    models: list[str] | None = None
    max_cost: float | None = None


# column -> (its shape, the empty value shown in its place when it is not in that shape)
CANDIDATE_SHAPES = {
    "inspiration_ids": (TypeAdapter(list[int]), list),
    "stages": (TypeAdapter(list[Stage]), list),
    "checks": (TypeAdapter(Checks | None), lambda: None),
    "per_env": (TypeAdapter(dict[str, dict[str, EnvResult]]), dict),
}
CONFIG_SHAPE = TypeAdapter(SummaryConfig)


def candidate_in_shape(candidate: Candidate) -> tuple[Candidate, list[str]]:
    """A copy of the candidate whose JSON values are all in their writers' shapes (the
    others emptied), and a note for each value that was not."""
    emptied, notes = {}, []
    for column, (shape, empty) in CANDIDATE_SHAPES.items():
        try:
            shape.validate_python(getattr(candidate, column))
        except ValidationError as error:
            emptied[column] = empty()
            notes.append(_note(f"{column} of candidate {candidate.id}", error))
    return candidate.model_copy(update=emptied), notes


def config_note(campaign: Campaign) -> str | None:
    """None when the campaign's settings can be summarised, else why not."""
    try:
        CONFIG_SHAPE.validate_python(campaign.config)
    except ValidationError as error:
        return _note(f"the settings of campaign {campaign.name}", error)
    return None


def _note(what: str, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(map(str, first["loc"])) or "value"
    return f"{what} could not be read ({where}: {first['msg']})"[:NOTE_CHARS]
