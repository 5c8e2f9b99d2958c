"""Which process runs a campaign: a lease on the campaign row (host, pid, heartbeat), so a
second runner refuses to start while the first is alive, and a dead one (kill -9) is
replaced at once."""

import os
import socket
import threading
from datetime import timedelta

from archive import writes
from archive.db import Engine, transaction
from archive.schema import Campaign, utcnow
from sandbox.vocabulary import CampaignStatus, EventKind

HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=60)


class CampaignBusy(RuntimeError):
    pass


def runner_alive(campaign: Campaign) -> bool:
    """Whether another process is running the campaign now. On this host its pid answers for
    it; elsewhere a heartbeat younger than a minute does."""
    if campaign.runner_pid is None or campaign.heartbeat_at is None:
        return False
    if campaign.runner_host == socket.gethostname():
        try:
            os.kill(campaign.runner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return utcnow() - campaign.heartbeat_at < STALE_AFTER


def claim(
    engine: Engine, campaign_id: int, *, config: dict | None = None, detail: str = ""
) -> None:
    """Take the campaign for this process and log a start or resume event; CampaignBusy if a
    live runner holds it."""
    with transaction(engine) as session:
        # Row-locked on PostgreSQL so two runners starting at once cannot both take it
        # (SQLite's BEGIN IMMEDIATE serialises them already).
        campaign = session.get(
            Campaign, campaign_id, with_for_update={"key_share": True}, populate_existing=True
        )
        if runner_alive(campaign) and campaign.runner_pid != os.getpid():
            raise CampaignBusy(
                f"campaign {campaign.name} is already running (pid {campaign.runner_pid} on "
                f"{campaign.runner_host}, heartbeat {campaign.heartbeat_at:%H:%M:%S} UTC)"
            )
        resumed = campaign.status != CampaignStatus.CREATED
        campaign.runner_host, campaign.runner_pid = socket.gethostname(), os.getpid()
        campaign.heartbeat_at = campaign.updated_at = utcnow()
        campaign.status, campaign.message = CampaignStatus.RUNNING, ""
        if config is not None:
            campaign.config = config
        writes.log_event(
            session,
            campaign_id,
            EventKind.RESUME if resumed else EventKind.START,
            f"pid {os.getpid()} on {socket.gethostname()}{detail}",
            {"config": campaign.config},
        )


def heartbeat(engine: Engine, campaign_id: int, stop: threading.Event) -> threading.Thread:
    """A daemon thread that refreshes the lease until `stop` is set."""

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with transaction(engine) as session:
                    session.get(Campaign, campaign_id).heartbeat_at = utcnow()
            except Exception:  # a busy database only delays the next beat
                pass

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def release(session, campaign_id: int, status: str, message: str) -> Campaign:
    """End the lease with the campaign's final status (inside the caller's transaction)."""
    campaign = session.get(Campaign, campaign_id)
    campaign.status, campaign.message, campaign.updated_at = status, message[:2000], utcnow()
    campaign.runner_pid = campaign.heartbeat_at = None
    writes.log_event(session, campaign_id, status, message)
    return campaign
