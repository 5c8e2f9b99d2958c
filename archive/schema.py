"""The archive's tables. Every candidate ever proposed is a row, whatever became of it.

Schema changes go through a new Alembic revision in archive/migrations (tests fail when the
models and the migrations disagree), so an archive written today opens next month.
"""

from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from sandbox.vocabulary import CampaignStatus, Status


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    task: str
    budget: str
    proposer: str
    config: dict = Field(sa_column=Column(JSON, nullable=False))
    status: str = CampaignStatus.CREATED  # a CampaignStatus
    message: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Liveness of the process running the campaign: a second runner refuses to start while
    # the first one's heartbeat is fresh and its process alive.
    runner_host: str | None = None
    runner_pid: int | None = None
    heartbeat_at: datetime | None = None


class Candidate(SQLModel, table=True):
    __table_args__ = (
        Index("ix_candidate_campaign_code_hash", "campaign_id", "code_hash"),
        Index("ix_candidate_campaign_signature", "campaign_id", "signature"),
        Index("ix_candidate_campaign_status", "campaign_id", "status"),
        Index("ix_candidate_campaign_slot", "campaign_id", "generation", "island"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    task: str
    code: str | None = Field(default=None, sa_column=Column(Text))
    code_hash: str | None = (
        None  # sha256 of the normalised source (comments, docstrings, layout removed)
    )
    signature: str | None = (
        None  # behaviour: hash of the outputs on a fixed input grid, from the validity stage
    )
    origin: str  # one of ORIGINS
    operator: str = (
        ""  # how the proposer made it: rewrite / diff / crossover / repair / mutate / random / seed
    )
    baseline_name: str | None = None
    parent_id: int | None = Field(default=None, foreign_key="candidate.id")
    inspiration_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    duplicate_of: int | None = Field(default=None, foreign_key="candidate.id")
    island: int = 0
    generation: int = 0
    model: str | None = None
    proposal_note: str = Field(default="", sa_column=Column(Text, nullable=False))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    status: str = Status.PENDING  # a Status
    # Mean normalised IQM over the meta-train environments, pooling every evaluation round
    fitness: float | None = None
    meta_test_fitness: float | None = None
    per_env: dict = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # split -> env -> scores, curve
    stages: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    checks: dict | None = Field(default=None, sa_column=Column(JSON))
    log_tail: str = Field(default="", sa_column=Column(Text, nullable=False))
    backend: str = ""
    eval_seconds: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    evaluated_at: datetime | None = None
    seeds: int = 0  # seeds per environment that `fitness` pools (all rounds)
    review: str | None = None  # a Review, for candidates that entered their island's top k
    fidelity: str | None = None  # a Fidelity: the environments its numbers rest on (scored only)


class EvaluationRound(SQLModel, table=True):
    """One training of a scored candidate on one block of seeds: block 0 is the search's,
    later blocks are fresh seeds of an elite re-evaluation. Every candidate of a campaign
    trains block b from the same seed keys and is scored on the same episodes, so rounds of
    two candidates in one block are paired, seed by seed."""

    __tablename__ = "evaluation_round"
    __table_args__ = (UniqueConstraint("candidate_id", "block", name="uq_round_candidate_block"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    candidate_id: int = Field(foreign_key="candidate.id", index=True)
    block: int
    training_seed: int = Field(sa_column=Column(BigInteger, nullable=False))
    eval_seed: int | None = Field(default=None, sa_column=Column(BigInteger))
    runs: int  # seeds per environment
    status: str  # a Status: a failed round is kept too
    fitness: float | None = None  # of this round alone
    scores: dict = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # split -> env -> normalised score per seed
    seconds: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class IslandMember(SQLModel, table=True):
    """Who lives on which island: every candidate on its own island, baselines on all of them,
    migrants on the islands they moved to. Fitness is copied here, written in the same
    transaction as the candidate's, so parent selection is one indexed scan."""

    __tablename__ = "island_member"
    __table_args__ = (Index("ix_island_member_rank", "campaign_id", "island", "fitness"),)

    campaign_id: int = Field(foreign_key="campaign.id", primary_key=True)
    island: int = Field(primary_key=True)
    candidate_id: int = Field(foreign_key="candidate.id", primary_key=True)
    since_generation: int = 0
    migrated_from: int | None = None  # the island it came from, None for a native member
    fitness: float | None = None  # the rank score (a RankBy of the pooled fitness); None: unranked


class LLMCall(SQLModel, table=True):
    """One request to a model and its response (prompts and responses of the archive)."""

    __tablename__ = "llm_call"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    candidate_id: int | None = Field(default=None, foreign_key="candidate.id", index=True)
    model: str
    messages: list = Field(sa_column=Column(JSON, nullable=False))
    response: str | None = Field(default=None, sa_column=Column(Text))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    attempts: int = 1
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """The campaign's log: starts, resumes, migrations, stops, errors."""

    __table_args__ = (UniqueConstraint("campaign_id", "key", name="uq_event_campaign_key"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    time: datetime = Field(default_factory=utcnow)
    kind: str
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    key: str | None = (
        None  # set for events that must happen once (a migration), enforced by the database
    )


class ESCheckpoint(SQLModel, table=True):
    """The state of an evolution-strategies campaign after a generation, so it resumes from
    the newest row. Arrays are npz bytes (numpy.savez; never pickle), with the costs of the
    generation: training runs, environment steps and wall seconds (ES spends no dollars)."""

    __tablename__ = "es_checkpoint"
    __table_args__ = (
        UniqueConstraint("campaign_id", "generation", name="uq_es_checkpoint_campaign_generation"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    generation: int  # generations completed; the state is ready for generation + 1
    state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the ES state's leaves
    mean: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the mean network's weights
    best_fitness: float | None = None  # of this generation's members (normalised: 1 = PPO)
    mean_fitness: float | None = None
    std_fitness: float | None = None
    member_fitness: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    per_env: dict = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # env -> mean over members
    sigma: float | None = None  # sampling std used for the next generation
    env_steps: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False)
    )  # spent by this generation (> 2^31 at paper scale)
    training_runs: int = 0
    wall_seconds: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
