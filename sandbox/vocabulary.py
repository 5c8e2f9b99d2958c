"""The names the system's records are made of, each defined once: what became of a candidate,
where it came from, how a campaign stands, which sandbox and executor run evaluations.

It lives in `sandbox/` because the sandbox ships alone (the sandbox image, the code snapshot)
and reports stage statuses itself; the orchestration side and the archive import it from
here. The values are what the archive stores: never rename one without a migration.
"""

from enum import StrEnum


class Status(StrEnum):
    """What became of a candidate, or of one stage of its evaluation."""

    PENDING = "pending"  # proposed and archived, not yet evaluated
    OK = "ok"  # evaluated and scored
    REJECTED = "rejected"  # refused by the static checks
    INVALID = "invalid"  # broke its contract or a validity condition
    FAILED = "failed"  # crashed
    TIMEOUT = "timeout"  # killed at a time limit
    OOM = "oom"  # ran out of memory
    OUTPUT_LIMIT = "output_limit"  # printed more than its output budget
    NONFINITE = "nonfinite"  # training produced NaN or inf
    CRASHED = "crashed"  # the Ray worker or node running it died on every try
    DUPLICATE = "duplicate"  # the same code or behaviour as an earlier candidate: not trained
    NO_CODE = "no_code"  # the proposer returned nothing usable
    CANCELLED = "cancelled"  # stopped by its caller: no verdict, never stored
    INFRA = "infra"  # the sandbox itself failed under it: no verdict, never stored


# Tuples, not sets: they serve as SQL IN lists as well as for membership tests.
# Verdicts of an evaluation that scored nothing: repair material for proposers, failures in reports.
FAILURES = (
    Status.REJECTED,
    Status.INVALID,
    Status.FAILED,
    Status.TIMEOUT,
    Status.OOM,
    Status.OUTPUT_LIMIT,
    Status.NONFINITE,
    Status.CRASHED,
)
EVALUATED = (Status.OK, *FAILURES)  # an evaluation reached a verdict
DECIDED_WITHOUT_EVALUATION = (Status.DUPLICATE, Status.NO_CODE)
NO_VERDICT = (Status.CANCELLED, Status.INFRA)  # the candidate stays pending
NOT_EVALUATED = (Status.PENDING, *DECIDED_WITHOUT_EVALUATION)
# What the sandboxed stages may report about themselves (read back as untrusted records).
STAGE_VERDICTS = tuple(s for s in EVALUATED if s != Status.CRASHED)


class Origin(StrEnum):
    """Where a candidate came from; LLM and MUTATION are also the campaign proposers."""

    BASELINE = "baseline"
    LLM = "llm"
    MUTATION = "mutation"
    ES = "es"
    DISTILLED = "distilled"


ORIGIN_LABELS = {
    Origin.BASELINE: "baseline",
    Origin.LLM: "LLM",
    Origin.MUTATION: "mutation",
    Origin.ES: "ES (LPO)",
    Origin.DISTILLED: "distilled",
}


class CampaignStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    FINISHED = "finished"
    COST_CAP = "cost_cap"  # stopped proposing at its dollar cap
    TIME_CAP = "time_cap"  # stopped proposing at its time cap (`max_seconds`)
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; `scientist resume` continues


class Review(StrEnum):
    """A scored candidate's standing with elite re-evaluation: one that enters its island's
    top k is held (no parent, migrant, inspiration or reported discovery) until it has been
    trained again on fresh blocks of seeds."""

    HELD = "held"  # waiting for its re-evaluation rounds
    DONE = "reevaluated"  # its fitness pools the search's seeds and the fresh ones


META_TRAIN, META_TEST = "meta_train", "meta_test"  # the parts of a task's split


class Fidelity(StrEnum):
    """Which environments a round of training covers. A campaign screens each proposal on its
    meta-train environments alone; the meta-test environments are trained only for the
    candidates it promotes (elite re-evaluation, which adds fresh seeds too) and for its
    baselines, so a candidate's archive row says which its numbers rest on."""

    SCREEN = "screen"  # the meta-train environments
    FULL = "full"  # meta-train and meta-test environments


class EventKind(StrEnum):
    """What a campaign's log records, besides its status changes (CampaignStatus) and a
    sandbox failure (Status.INFRA)."""

    START = "start"  # a runner took the campaign
    RESUME = "resume"  # ... that had run before
    BATCH = "batch"  # the batch size chosen, and why
    BASELINES = "baselines"  # the task's baselines were added (once)
    MIGRATION = "migration"  # islands exchanged their best (once per generation)
    REEVALUATION = "reevaluation"  # promoted candidates were trained on fresh seeds
    ES_GENERATION = "es_generation"  # an ES generation's checkpoint
    ES_CANDIDATE = "es_candidate"  # an ES mean network rendered as a candidate
    ES_EVALUATED = "es_evaluated"  # ... and scored
    ES_BUDGET = "es_budget"  # what an ES run spent
    DISTILLED = "distilled"  # a closed form distilled from a candidate
    DISTILL_EVALUATED = "distill_evaluated"  # ... and scored


class Stage(StrEnum):
    """The steps of a candidate's evaluation, in order, as its archive row lists them. STATIC
    and LOAD run on the trusted side (and again inside the sandbox); SANDBOX names a sandbox
    run that ended outside any stage (a crash, a kill); SCORE is the trusted scorer."""

    STATIC = "static"  # the allowlist of imports, names and attributes
    LOAD = "load"  # the module loads under the restricted loader and defines the entry point
    TRACE = "trace"  # abstract shapes and dtypes; the program an expression compiles to
    VALIDITY = "validity"  # the piece's conditions (drift: Mirror Learning's), with proofs
    LANDSCAPE = "landscape"  # a drift's (ratio, advantage) grid, for pictures and distillation
    TRIAL = "trial"  # a short training run: finite outputs, runtime monitor
    FULL = "full"  # the budget's training and evaluation, block by block
    SANDBOX = "sandbox"
    SCORE = "score"


class Selection(StrEnum):
    """How a campaign picks parents: EVOLUTION from its archive; NONE, the best-of-N control
    arm, from the task's baselines only (the same proposer, no feedback from results)."""

    EVOLUTION = "evolution"
    NONE = "none"


class RankBy(StrEnum):
    """The score islands rank their members by."""

    LCB = "lcb"  # pooled fitness less one standard error (fewer seeds rank lower)
    MEAN = "mean"  # pooled fitness


class Sandbox(StrEnum):
    """Sandbox backends; AUTO is the strongest that passes its preflight here."""

    AUTO = "auto"
    DOCKER = "docker"
    PROCESS = "process"


class ExecutorName(StrEnum):
    LOCAL = "local"
    RAY = "ray"


class Proof(StrEnum):
    """The certificate's verdict on one validity condition (sandbox/checks/certificate.py)."""

    PROVED = "proved"  # interval bounds settle it on the whole domain
    VIOLATED = "violated"  # a concrete counterexample, confirmed by evaluating the candidate
    UNPROVED = "unproved"  # neither: box budget spent, or a primitive without interval rules


class Assurance(StrEnum):
    """How far a valid candidate's conditions are established, for labels users read."""

    CERTIFIED = "certified"  # every condition proved
    SAMPLED = "passed sampling"  # numeric checks and the training monitor passed, no proof
