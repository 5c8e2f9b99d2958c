"""One run of a campaign, GP/LLM or ES alike: take the lease, keep its heartbeat, and end
with the campaign's status whatever happens (finished, a cap, Ctrl-C, a failure)."""

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from archive import lease
from archive.db import Engine, Session, transaction
from archive.schema import Campaign
from sandbox.vocabulary import CampaignStatus


@dataclass
class Outcome:
    """How the run ends; the body may set a cap's status. `campaign` is the released row."""

    status: str = CampaignStatus.FINISHED
    message: str = ""
    campaign: Campaign | None = None


@contextlib.contextmanager
def leased_run(
    engine: Engine,
    campaign_id: int,
    stop: threading.Event,
    *,
    resume_hint: str,
    config: dict | None = None,
    detail: str = "",
    before_release: Callable[[Session], None] | None = None,
) -> Iterator[Outcome]:
    """The body runs holding the campaign's lease (CampaignBusy if a live runner has it);
    `stop` is set on the way out, for the body's workers and the heartbeat. Ctrl-C ends the
    campaign `interrupted` with `resume_hint`, an exception `failed` with its one line.
    `before_release` writes what the run adds up to, in the releasing transaction."""
    lease.claim(engine, campaign_id, config=config, detail=detail)
    beat = lease.heartbeat(engine, campaign_id, stop)
    outcome = Outcome()
    try:
        yield outcome
    except KeyboardInterrupt:
        outcome.status, outcome.message = CampaignStatus.INTERRUPTED, resume_hint
        raise
    except BaseException as error:
        outcome.status, outcome.message = CampaignStatus.FAILED, f"{type(error).__name__}: {error}"
        raise
    finally:
        stop.set()
        beat.join(timeout=1)
        with transaction(engine) as session:
            if before_release is not None:
                before_release(session)
            outcome.campaign = lease.release(session, campaign_id, outcome.status, outcome.message)
