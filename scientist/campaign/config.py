"""A campaign's settings: from CLI options, a TOML file, or both (options win)."""

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.backends import check_sandbox
from sandbox.budgets import BUDGETS, REEVALUATION_BLOCKS
from sandbox.vocabulary import ExecutorName, Origin, RankBy, Sandbox, Selection
from scientist.proposers.registry import check_proposer
from scientist.search.strategy import SearchSettings, check_strategy

# Settings that may change when a campaign is resumed; the rest define the campaign.
RESUMABLE = (
    "generations",
    "workers",
    "batch",
    "max_cost",
    "max_seconds",
    "sandbox",
    "api_base",
    "timeout",
    "executor",
    "ray_address",
)


class CampaignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    task: str
    proposer: str | None = None  # mutation or llm; None: llm when a model is given, else mutation
    models: list[str] = []
    api_base: str | None = None
    generations: int = Field(3, ge=0)
    population: int = Field(4, ge=1, description="proposals per island per generation")
    islands: int = Field(2, ge=1)
    budget: str = "smoke"
    sandbox: str = Sandbox.AUTO
    workers: int = Field(
        2, ge=1, description="batches evaluated at once (with ray: tasks in flight on the cluster)"
    )
    batch: int | None = Field(
        None,
        ge=1,
        le=64,
        description="candidates evaluated together in one sandbox run; None: chosen by the "
        "executor from the budget and the device (scientist/executors/sizing.py)",
    )
    executor: ExecutorName = ExecutorName.LOCAL
    ray_address: str | None = (
        None  # None: a Ray cluster started for this campaign; "auto": the running one
    )
    max_cost: float | None = Field(
        None, ge=0, description="stop proposing once this many dollars are spent"
    )
    max_seconds: float | None = Field(
        None, gt=0, description="stop proposing once this run has lasted this many seconds"
    )
    seed: int = 0
    seed_baselines: list[str] = Field(
        [],
        description="the baselines the search starts from (parents, inspirations, migrants); "
        "the others are trained as references only. Empty: all of them",
    )
    parents: int = Field(2, ge=1, description="parents sampled per proposal")
    inspirations: int = Field(3, ge=0)
    exploration: float = Field(0.2, ge=0, le=1)
    migration_interval: int = Field(2, ge=0)
    migrants: int = Field(1, ge=0)
    attempts_per_slot: int = Field(
        3, ge=1, description="proposals tried for one slot before moving on"
    )
    selection: str = Field(
        Selection.EVOLUTION,
        description="the search strategy (scientist/search/strategies): evolution, parents "
        "from the archive; none, the best-of-N control arm, parents from the task's baselines",
    )
    reevaluate_top: int = Field(
        2,
        ge=0,
        description="a candidate entering its island's top k is re-evaluated on fresh seeds "
        "before it may be a parent, migrant, inspiration or discovery (0: never)",
    )
    reevaluation_blocks: int | None = Field(
        None,
        ge=1,
        description="fresh blocks of the budget's seeds per re-evaluation; None: the budget's "
        f"({REEVALUATION_BLOCKS})",
    )
    screening: bool = Field(
        True,
        description="screen each proposal on its meta-train environments and one block of "
        "seeds; only those re-evaluated (`reevaluate_top`) also train the meta-test "
        "environments (False: every proposal trains them all)",
    )
    rank_by: RankBy = RankBy.LCB
    eval_seed: int | None = Field(
        None, ge=0, description="seed of the scoring episodes; drawn when the campaign is created"
    )
    timeout: float = Field(120.0, gt=0, description="seconds per LLM request")
    price_per_million: tuple[float, float] | None = (
        None  # USD per million input/output tokens, for unpriced models
    )

    @property
    def review_blocks(self) -> int:
        """Fresh blocks per elite re-evaluation: the setting, else the budget's."""
        return self.reevaluation_blocks or BUDGETS[self.budget].reevaluation_blocks

    @property
    def screens(self) -> bool:
        """Screening needs promotions: without re-evaluation no proposal would ever train
        its meta-test environments."""
        return self.screening and self.reevaluate_top > 0

    @model_validator(mode="after")
    def _resolve(self):
        if self.proposer is None:
            self.proposer = Origin.LLM if self.models else Origin.MUTATION
        check_proposer(self.proposer)
        if self.proposer == Origin.LLM and not self.models:
            raise ValueError("the llm proposer needs --model (any litellm model name)")
        if self.budget not in BUDGETS:
            raise ValueError(f"unknown budget {self.budget!r}; choose from {', '.join(BUDGETS)}")
        check_strategy(self.selection)
        check_sandbox(self.sandbox)
        return self

    @property
    def search(self) -> SearchSettings:
        return SearchSettings(
            islands=self.islands,
            parents=self.parents,
            inspirations=self.inspirations,
            exploration=self.exploration,
            migration_interval=self.migration_interval,
            migrants=self.migrants,
            promote_top=self.reevaluate_top,
        )

    @classmethod
    def load(cls, toml_path: Path | None = None, **options) -> "CampaignConfig":
        """Settings from a TOML file (top-level keys named like the options), overridden by
        the options that were given (None means not given)."""
        data = tomllib.loads(Path(toml_path).read_text()) if toml_path else {}
        data.update({k: v for k, v in options.items() if v is not None and v != []})
        return cls(**data)

    def resumed_with(self, stored: dict) -> "CampaignConfig":
        """The stored campaign's settings with this run's resumable changes applied. Anything
        else that differs is an error: it would make a different campaign under the same name."""
        given = self.model_dump()
        merged = {**stored, **{k: given[k] for k in RESUMABLE if k in self.model_fields_set}}
        # A setting an older archive does not store runs at its default: a different value
        # given now would be dropped without a word, so it clashes like a stored one.
        had = {k: stored.get(k, type(self).model_fields[k].default) for k in self.model_fields_set}
        check_unchanged(
            self.name, had, {k: given[k] for k in self.model_fields_set - {"name"}}, RESUMABLE
        )
        return CampaignConfig(**merged)


def check_unchanged(name: str, stored: dict, given: dict, resumable) -> None:
    """ValueError, naming each setting, where `given` changes a stored setting that is not
    `resumable`: it would make a different campaign under the same name."""
    clash = [
        k
        for k in given
        if k not in resumable and k in stored and _comparable(given[k]) != _comparable(stored[k])
    ]
    if clash:
        raise ValueError(
            f"campaign {name} exists with different "
            + ", ".join(f"{k} ({stored[k]!r}, not {given[k]!r})" for k in sorted(clash))
            + f"; only {', '.join(resumable)} can change on resume. "
            "Choose another --name for a new campaign."
        )


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value
