"""The llm proposer: asks a language model (through litellm) for a new candidate module.

One proposal = one edit operator (rewrite / diff / crossover / repair), one model picked from
the ensemble, one model call (with its own retries), and the code parsed out of the reply.
Network trouble and unusable replies are ordinary outcomes: they come back as a Proposal
without code and with the call recorded. A configuration that cannot work raises
ProposerError: no models at construction; at the first call, ModelConfigError for what no
retry can fix (no or a refused API key, an unknown model, a request the server refuses).

The API key is handed to litellm and nowhere else: not to prompts, records or notes.
"""

import email.utils
import functools
import ipaddress
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

# litellm fetches its model price map from GitHub at import unless told otherwise; without
# internet that costs retries (and would hang behind a firewall that drops packets). The
# copy bundled with the installed litellm is enough for cost estimates.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sandbox.vocabulary import Origin  # noqa: E402
from scientist.proposers import parsing, prompting  # noqa: E402
from scientist.proposers.base import (  # noqa: E402
    CallRecord,
    ModelConfigError,
    ParentView,
    Proposal,
    ProposalRequest,
    ProposerError,
)

DEFAULT_OPERATOR_WEIGHTS = {"repair": 0.2, "crossover": 0.2, "diff": 0.3, "rewrite": 0.3}
MAX_INSPIRATIONS = 3
MAX_BACKOFF_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 300.0
# The cost floor added to every model's mean cost, as a fraction of the ensemble's typical
# cost: a free model then weighs a few times a typical one at equal usefulness, not infinitely.
COST_FLOOR_FRACTION = 0.5
# Where the commands read the key from; named in the errors that ask for one.
API_KEY_VARIABLE = "SCIENTIST_API_KEY"


def environment_api_key() -> str | None:
    """The key for an --api-base server, from the one variable every command reads."""
    return os.environ.get(API_KEY_VARIABLE)


# Sent to a local --api-base server when there is no key: OpenAI-compatible local servers
# (Ollama, vLLM, llama.cpp) accept any, but litellm's OpenAI client refuses to call without.
LOCAL_PLACEHOLDER_KEY = "no-key-needed"
MAX_ERROR_DETAIL_CHARS = 200

# litellm reports a missing key with a different class per provider (an InternalServerError
# for OpenAI, an APIConnectionError for Gemini); its text is the only common sign.
_MISSING_KEY = re.compile(r"\bmissing\b[^.\n]{0,40}\b(?:credentials|api[ _-]?key)", re.IGNORECASE)
_NO_KEY = ("no API key", "set {keys}")
# Errors no retry can fix, in the order checked: litellm's class, the HTTP status (litellm
# maps some, e.g. an OpenAI-style 403, to a plain APIError), what it means, what to do.
_CONFIG_ERRORS = (
    ("AuthenticationError", 401, "the API key was refused", "set {keys} to a valid key"),
    (
        "PermissionDeniedError",
        403,
        "the API key may not use this model",
        "use a key with access to it, or another --model",
    ),
    (
        "NotFoundError",
        404,
        "the model or the endpoint does not exist",
        "check --model and --api-base",
    ),
    ("BadRequestError", 400, "the server refuses the request", "check --model and --api-base"),
)
# BadRequestErrors about one prompt rather than the configuration: recorded, not fatal.
_PROMPT_ERRORS = ("ContextWindowExceededError", "ContentPolicyViolationError")
_TRANSIENT_ERRORS = (
    "Timeout",
    "RateLimitError",
    "APIConnectionError",
    "ServiceUnavailableError",
    "InternalServerError",
    "BadGatewayError",
)


@functools.cache
def _litellm():
    """litellm, imported on first use (it takes seconds to import, and most commands never
    call a model)."""
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on every error
    litellm.telemetry = False  # a no-op in current versions; older ones phoned home
    return litellm


@dataclass
class ModelStats:
    """What the ensemble rule knows about one model, with Beta(1, 1) priors on the rates."""

    calls: int = 0
    usable: int = 0  # calls whose reply gave a candidate module
    cost_usd: float = 0.0
    outcomes: int = 0  # candidates reported through record_outcome
    improvements: int = 0

    @property
    def usable_rate(self) -> float:
        return (self.usable + 1) / (self.calls + 2)

    @property
    def improvement_rate(self) -> float:
        return (self.improvements + 1) / (self.outcomes + 2)

    @property
    def mean_cost(self) -> float | None:
        return self.cost_usd / self.calls if self.calls else None


class LLMProposer:
    name = Origin.LLM

    def __init__(
        self,
        models: list[str],
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff_seconds: float = 2.0,
        temperature: float = 0.8,
        max_tokens: int = 4096,
        operator_weights: dict | None = None,
        price_per_million: tuple[float, float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        models = list(dict.fromkeys(models or []))
        if not models:
            raise ProposerError("the llm proposer needs at least one model")
        weights = dict(DEFAULT_OPERATOR_WEIGHTS if operator_weights is None else operator_weights)
        unknown = set(weights) - set(prompting.OPERATORS)
        if unknown:
            raise ProposerError(
                f"unknown operators {sorted(unknown)}; known: {', '.join(prompting.OPERATORS)}"
            )
        if any(
            not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)
            for w in weights.values()
        ):
            raise ProposerError(f"operator weights must be finite and non-negative: {weights}")
        if price_per_million is not None and (
            len(price_per_million) != 2 or min(price_per_million) < 0
        ):
            raise ProposerError(
                f"price_per_million is (input, output) USD per million tokens: {price_per_million}"
            )
        if max_retries < 0 or timeout <= 0:
            raise ProposerError("max_retries must be >= 0 and timeout > 0")
        self.models = models
        self.api_base = api_base
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.operator_weights = weights
        self.price_per_million = price_per_million
        self.sleep = sleep
        self.stats = {model: ModelStats() for model in models}
        self._lock = threading.Lock()  # proposals may run in parallel threads

    def __repr__(self) -> str:  # never shows the key
        return f"LLMProposer(models={self.models!r}, api_base={self.api_base!r})"

    # --- the proposal ----------------------------------------------------------------------

    def propose(self, request: ProposalRequest) -> Proposal:
        model = self.choose_model(request.rng)
        operator = self.choose_operator(request)
        jitter = random.Random(request.rng.getrandbits(64))  # retries never shift request.rng
        messages, parent_ids = self._prompt(operator, request)
        record, truncated = self._call(model, messages, jitter)
        if record.error is not None:
            parsed = parsing.Parsed(
                None, f"{model} failed after {record.attempts} attempt(s): {record.error}"
            )
        elif operator == "diff":
            parsed = parsing.edit_module(
                record.response or "", request.parents[0].code, request.task
            )
        else:
            parsed = parsing.extract_module(record.response or "", request.task)
        note = parsed.note
        if not parsed.ok and truncated:
            note += " (the reply was cut off at max_tokens)"
        with self._lock:
            stats = self.stats[model]
            stats.calls += 1
            stats.usable += parsed.ok
            stats.cost_usd += record.cost_usd
        return Proposal(
            code=parsed.code,
            operator=operator,
            parent_ids=parent_ids,
            model=model,
            calls=[record],
            note=note,
        )

    def choose_operator(self, request: ProposalRequest) -> str:
        """An operator the request has material for, drawn with the configured weights;
        rewrite (from the task alone if need be) when no weighted operator applies."""
        applicable = {
            "rewrite": True,
            "diff": bool(request.parents),
            "crossover": len(request.parents) >= 2,
            "repair": bool(request.failures),
        }
        options = [
            (op, self.operator_weights.get(op, 0.0)) for op in prompting.OPERATORS if applicable[op]
        ]
        options = [(op, w) for op, w in options if w > 0]
        if not options:
            return "rewrite"
        return request.rng.choices([op for op, _ in options], weights=[w for _, w in options])[0]

    def _prompt(self, operator: str, request: ProposalRequest) -> tuple[list[dict], list[int]]:
        task, parents = request.task, request.parents
        if operator == "repair":
            failure = request.failures[
                0
            ]  # the newest: the most relevant to what the island does now
            return prompting.render_messages("repair", task, failure=failure), [failure.id]
        if operator == "crossover":
            return prompting.render_messages("crossover", task, parents=parents[:2]), [
                p.id for p in parents[:2]
            ]
        if operator == "diff":
            return prompting.render_messages("diff", task, parents=parents[:1]), [parents[0].id]
        inspirations = _distinct(request.inspirations, exclude={p.id for p in parents[:1]})[
            :MAX_INSPIRATIONS
        ]
        messages = prompting.render_messages(
            "rewrite", task, parents=parents[:1], inspirations=inspirations
        )
        return messages, [p.id for p in parents[:1]] + [c.id for c in inspirations]

    # --- the ensemble ----------------------------------------------------------------------

    def model_weights(self) -> dict[str, float]:
        """Sampling weight per model: usable-reply rate x improvement rate (both with a
        Beta(1, 1) prior) / (mean cost per call + a floor). A model not called yet is priced
        at the ensemble's typical cost so that it gets tried."""
        with self._lock:
            known = [s.mean_cost for s in self.stats.values() if s.mean_cost is not None]
            typical = sum(known) / len(known) if known else 0.0
            floor = COST_FLOOR_FRACTION * typical + 1e-12
            return {
                model: s.usable_rate
                * s.improvement_rate
                / ((typical if s.mean_cost is None else s.mean_cost) + floor)
                for model, s in self.stats.items()
            }

    def choose_model(self, rng: random.Random) -> str:
        if len(self.models) == 1:
            return self.models[0]
        weights = self.model_weights()
        return rng.choices(self.models, weights=[weights[m] for m in self.models])[0]

    def record_outcome(self, model: str, fitness_improved: bool) -> None:
        """Tells the ensemble whether a candidate of `model` beat its primary parent. Optional:
        without it every model has the same improvement rate. Unknown models are ignored (an
        archive may hold candidates of models no longer configured)."""
        with self._lock:
            stats = self.stats.get(model)
            if stats is not None:
                stats.outcomes += 1
                stats.improvements += bool(fitness_improved)

    # --- the call --------------------------------------------------------------------------

    def complete(
        self, messages: list[dict], *, model: str | None = None, rng: random.Random | None = None
    ) -> tuple[CallRecord, bool]:
        """One model call with this proposer's retries, pricing and key handling, for callers
        that keep their own conversation (distillation). Returns the call's record (its
        `response` is the reply text, None when the call failed after its retries) and whether
        the reply was cut off at max_tokens. Raises ModelConfigError (a ProposerError) when
        the configuration cannot work, ProposerError for a model this proposer was not
        given. Leaves the ensemble statistics alone."""
        model = model or self.models[0]
        if model not in self.stats:
            raise ProposerError(f"model {model!r} is not one of {self.models}")
        snapshot = [
            dict(m) for m in messages
        ]  # the record must not change when the caller's list grows
        return self._call(model, snapshot, rng or random.Random())

    def _call(
        self, model: str, messages: list[dict], jitter: random.Random
    ) -> tuple[CallRecord, bool]:
        """The call with its retries, and whether the reply was cut off at max_tokens."""
        litellm = _litellm()
        started = time.monotonic()
        error_text = None
        for attempt in range(1, self.max_retries + 2):
            try:
                response = litellm.completion(
                    model=model,
                    messages=[dict(m) for m in messages],  # the record keeps the original
                    api_base=self.api_base,
                    api_key=self._key_for(model, litellm),
                    timeout=self.timeout,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    num_retries=0,  # the retries are ours, so that each attempt is counted
                    # some models refuse e.g. temperature; drop it rather than fail
                    drop_params=True,
                )
            except Exception as error:  # anything from the provider path is an outcome to record
                error_text = self._scrub(f"{type(error).__name__}: {error}")
                cause = _config_cause(error, litellm)
                if cause is not None:  # before any retry: no attempt would go differently
                    raise self._config_error(model, cause, error_text, litellm) from error
                if not _is_transient(error, litellm) or attempt > self.max_retries:
                    return CallRecord(
                        model=model,
                        messages=messages,
                        response=None,
                        seconds=time.monotonic() - started,
                        attempts=attempt,
                        error=error_text,
                    ), False
                self.sleep(self._delay(attempt, error, jitter))
                continue
            return self._record(model, messages, response, attempt, time.monotonic() - started)
        raise AssertionError("unreachable")  # the loop always returns

    def _record(
        self, model: str, messages: list[dict], response, attempts: int, seconds: float
    ) -> tuple[CallRecord, bool]:
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            truncated = getattr(choice, "finish_reason", None) == "length"
        except (AttributeError, IndexError, TypeError):
            text, truncated = "", False
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return CallRecord(
            model=model,
            messages=messages,
            response=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self._cost(response, prompt_tokens, completion_tokens),
            seconds=seconds,
            attempts=attempts,
        ), truncated

    def _cost(self, response, prompt_tokens: int, completion_tokens: int) -> float:
        """litellm's price for the call; for a model it cannot price (local, unknown, or a
        price of 0) the configured price_per_million, else 0. Never raises."""
        try:
            cost = float(_litellm().completion_cost(completion_response=response))
            if math.isfinite(cost) and cost > 0:
                return cost
        except Exception:  # unmapped models raise; the price map is best effort
            pass
        if self.price_per_million:
            per_input, per_output = self.price_per_million
            return (prompt_tokens * per_input + completion_tokens * per_output) / 1e6
        return 0.0

    def _delay(self, attempt: int, error: Exception, jitter: random.Random) -> float:
        """Exponential backoff with jitter (half fixed, half random), at least the server's
        Retry-After when it sent one."""
        base = min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        delay = base * (0.5 + 0.5 * jitter.random())
        retry_after = _retry_after(error)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return delay

    def _key_for(self, model: str, litellm) -> str | None:
        """The key to send: the configured one, else for a local --api-base server a
        placeholder where litellm finds no key of its own."""
        if self._api_key or not _is_local(self.api_base):
            return self._api_key
        return LOCAL_PLACEHOLDER_KEY if self._missing_keys(model, litellm) else None

    def _missing_keys(self, model: str, litellm) -> list[str]:
        """The provider's key variables litellm looks for and does not find."""
        try:
            found = litellm.validate_environment(model=model, api_base=self.api_base)
            return list(found.get("missing_keys") or [])
        except Exception:  # best effort: it only refines a message and a placeholder
            return []

    def _config_error(
        self, model: str, cause: tuple[str, str], error_text: str, litellm
    ) -> ModelConfigError:
        """One line: the model, what is wrong, litellm's first line, and what to set."""
        what, hint = cause
        keys = " or ".join(dict.fromkeys([API_KEY_VARIABLE, *self._missing_keys(model, litellm)]))
        detail = (error_text.splitlines() or [""])[0][:MAX_ERROR_DETAIL_CHARS]
        return ModelConfigError(f"{model}: {what} ({detail}); {hint.format(keys=keys)}")

    def _scrub(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text


def _distinct(candidates: list[ParentView], exclude: set[int]) -> list[ParentView]:
    seen, out = set(exclude), []
    for candidate in candidates:
        if candidate.id not in seen:
            seen.add(candidate.id)
            out.append(candidate)
    return out


def _is_local(api_base: str | None) -> bool:
    """Whether api_base names this machine or an address of a private network."""
    host = urllib.parse.urlsplit(api_base or "").hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _is_any(error: Exception, litellm, names: tuple[str, ...]) -> bool:
    return isinstance(error, tuple(getattr(litellm, name) for name in names))


def _config_cause(error: Exception, litellm) -> tuple[str, str] | None:
    """(what is wrong, what to do) when no call can succeed with this configuration (no or a
    refused key, an unknown model, a malformed request); None when a retry may pass or only
    this prompt is at fault (context too long, content policy)."""
    if _MISSING_KEY.search(str(error)):
        return _NO_KEY
    if _is_any(error, litellm, _PROMPT_ERRORS):
        return None
    status = getattr(error, "status_code", None)
    for name, code, what, hint in _CONFIG_ERRORS:
        if isinstance(error, getattr(litellm, name)) or status == code:
            return what, hint
    return None


def _is_transient(error: Exception, litellm) -> bool:
    """Timeouts, rate limits, lost connections, 5xx: worth a retry after a pause."""
    if _is_any(error, litellm, _TRANSIENT_ERRORS):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def _retry_after(error: Exception) -> float | None:
    """Seconds the server asked to wait (Retry-After in seconds or as a date, or OpenAI's
    retry-after-ms), from whichever headers litellm kept on the exception."""
    sources = (
        getattr(error, "litellm_response_headers", None),
        getattr(getattr(error, "response", None), "headers", None),
    )
    for headers in sources:
        try:
            items = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
        except (TypeError, ValueError, AttributeError):
            continue
        try:
            if "retry-after-ms" in items:
                return max(float(items["retry-after-ms"]) / 1000, 0.0)
            if "retry-after" in items:
                value = items["retry-after"].strip()
                try:
                    return max(float(value), 0.0)
                except ValueError:
                    when = email.utils.parsedate_to_datetime(value)
                    return max(when.timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, OverflowError):
            continue
    return None
