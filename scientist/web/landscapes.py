"""Drift heatmaps for the pages, from landscapes the sandbox computed.

Computing a landscape runs the candidate, which this process never does. Landscapes live
in an on-disk cache (one npz per normalised code hash, in sandbox/landscape.py's format,
validated by read_landscape on every load, because the arrays came out of a sandbox), with
the rendered PNG beside it. The cache is filled by `scientist web --precompute NAME`, or,
with `--compute-landscapes`, by a background thread that hands missing ones to the sandbox
and only waits for its output file.
"""

import functools
import io
import os
import queue
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from sandbox.landscape import Landscape, LandscapeError, read_landscape
from sandbox.vocabulary import Sandbox

DEFAULT_CACHE = Path("scientist-runs/landscapes")
DIGEST = re.compile(r"[0-9a-f]{64}")
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
MAX_QUEUED = 1000  # a crawler must not queue the whole archive


@functools.cache
def is_drift_task(task: str) -> bool:
    from sandbox.tasks import TaskError, load_task

    if not TASK_NAME.fullmatch(task):  # it names a folder: nothing like ../ from the database
        return False
    try:
        return load_task(task).piece.has_landscape
    except (TaskError, OSError, ValueError, KeyError):
        return False


def cache_key(code_hash: str | None) -> str | None:
    """The archive's code hash, when it is one (it becomes a file name)."""
    return code_hash if isinstance(code_hash, str) and DIGEST.fullmatch(code_hash) else None


class LandscapeCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._render = threading.Lock()  # one matplotlib figure at a time: they are memory-hungry
        self._sentences: dict[str, tuple[int, tuple[str, ...]]] = {}

    def npz(self, digest: str) -> Path:
        return self.directory / f"{digest}.npz"

    def has(self, digest: str) -> bool:
        return self.npz(digest).is_file()

    def load(self, digest: str) -> Landscape:
        """Raises LandscapeError when absent or invalid."""
        return read_landscape(self.npz(digest))

    def store(self, digest: str, landscape: Landscape) -> Path:
        arrays = {
            "ratio": landscape.ratio,
            "advantage": landscape.advantage,
            "drift": landscape.drift,
            "d_objective_dr": landscape.d_objective_dr,
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self._write(self.npz(digest), buffer.getvalue())
        try:
            self.png(digest)  # rendered now, so the first page view does not wait for matplotlib
        except (LandscapeError, OSError, ValueError):
            pass  # the page renders it (or says why not) when asked
        return path

    def sentences(self, digest: str) -> tuple[str, ...]:
        """The drift's features in words (pure numpy on the landscape), memoised per file."""
        from scientist.analysis import detect_features

        stamp = self.npz(digest).stat().st_mtime_ns
        hit = self._sentences.get(digest)
        if hit is None or hit[0] != stamp:
            hit = (stamp, tuple(detect_features(self.load(digest)).describe()))
            self._sentences[digest] = hit
        return hit[1]

    def png(self, digest: str) -> bytes:
        """The heatmap figure; rendered once and kept next to the npz. Raises LandscapeError."""
        png = self.directory / f"{digest}.png"
        cached = self._rendered(digest, png)
        if cached is not None:
            return cached
        from scientist.plots import drift_figure

        with self._render:
            cached = self._rendered(digest, png)  # another request may have drawn it meanwhile
            if cached is not None:
                return cached
            landscape = self.load(digest)
            buffer = io.BytesIO()
            # The features go on the page as text, not into the picture.
            drift_figure(landscape).savefig(buffer, format="png", dpi=80)
        data = buffer.getvalue()
        try:
            self._write(png, data)
        except OSError:
            pass  # a read-only cache still serves the figure, rendered each time
        return data

    def _rendered(self, digest: str, png: Path) -> bytes | None:
        try:
            if png.stat().st_mtime_ns >= self.npz(digest).stat().st_mtime_ns:
                return png.read_bytes()
        except OSError:
            pass
        return None

    def _write(self, path: Path, data: bytes) -> Path:
        """Atomically: a reader never sees half a file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            os.chmod(
                temporary, 0o644
            )  # mkstemp's 0600 would hide it from a browser running as another user
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


def compute_in_sandbox(task: str, code: str, sandbox: str) -> Landscape:
    from harness.landscape import compute_landscape

    return compute_landscape(task, code, sandbox)


@dataclass(frozen=True)
class Job:
    digest: str
    task: str
    code: str


class LandscapeWorker:
    """Fills the cache in one background thread. The candidate runs in the sandbox (another,
    isolated process); this thread waits for it and stores the validated arrays."""

    def __init__(
        self,
        cache: LandscapeCache,
        sandbox: str = Sandbox.AUTO,
        compute: Callable[[str, str, str], Landscape] = compute_in_sandbox,
    ):
        self.cache, self.sandbox, self.compute = cache, sandbox, compute
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.states: dict[str, str] = {}  # digest -> queued / running / the failure
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def request(self, digest: str, task: str, code: str) -> str:
        """The job's state after asking for it: queued, running, failed: ..., or busy."""
        with self.lock:
            state = self.states.get(digest)
            if state is not None:
                return state
            if self.jobs.qsize() >= MAX_QUEUED:
                return HeatmapState.BUSY
            self.states[digest] = HeatmapState.QUEUED
            self.jobs.put(Job(digest, task, code))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="landscape-worker", daemon=True
                )
                self.thread.start()
            return HeatmapState.QUEUED

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            with self.lock:
                self.states[job.digest] = HeatmapState.RUNNING
            try:
                self.cache.store(job.digest, self.compute(job.task, job.code, self.sandbox))
                state = None
            except Exception as error:  # noqa: BLE001 (reported on the page; the worker carries on)
                state = f"{FAILED_PREFIX}{type(error).__name__}: {error}"[:1000]
            with self.lock:
                if state is None:
                    self.states.pop(job.digest, None)
                else:
                    self.states[job.digest] = state


class HeatmapState(StrEnum):
    """How a candidate's drift heatmap stands in the browser (its own vocabulary, not a
    candidate status)."""

    READY = "ready"
    MISSING = "missing"  # not computed, and no background worker to ask
    QUEUED = "queued"
    RUNNING = "running"
    BUSY = "busy"  # the worker's queue is full
    FAILED = "failed"
    INVALID = "invalid"  # the cached file did not validate
    NOT_DRIFT = "not_drift"
    NO_CODE = "no_code"


FAILED_PREFIX = "failed: "  # a worker's state for a job that raised, followed by the error


@dataclass(frozen=True)
class HeatmapView:
    """What a page shows in place of a candidate's heatmap."""

    state: HeatmapState
    message: str = ""
    sentences: tuple[str, ...] = ()


def heatmap_view(
    cache: LandscapeCache,
    worker: LandscapeWorker | None,
    task: str,
    code_hash: str | None,
    code: str | None,
) -> HeatmapView:
    if not is_drift_task(task):
        return HeatmapView(
            HeatmapState.NOT_DRIFT,
            f"task {task} searches for no drift, so there is no drift landscape",
        )
    digest = cache_key(code_hash)
    if not code or digest is None:
        return HeatmapView(HeatmapState.NO_CODE, "this candidate has no code")
    if cache.has(digest):
        try:
            return HeatmapView(HeatmapState.READY, sentences=cache.sentences(digest))
        except (LandscapeError, OSError) as error:
            return HeatmapView(
                HeatmapState.INVALID,
                f"the cached landscape {cache.npz(digest)} is invalid: {error}",
            )
    if worker is None:
        return HeatmapView(HeatmapState.MISSING)
    state = worker.request(digest, task, code)
    if state.startswith(FAILED_PREFIX):
        return HeatmapView(HeatmapState.FAILED, state.removeprefix(FAILED_PREFIX))
    return HeatmapView(HeatmapState(state))


@dataclass
class Precomputed:
    computed: int = 0
    cached: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (candidate id, why)


def precompute(
    engine,
    campaign_name: str,
    cache: LandscapeCache,
    *,
    sandbox: str = Sandbox.AUTO,
    top: int | None = None,
    compute: Callable[[str, str, str], Landscape] = compute_in_sandbox,
    echo: Callable[[str], None] = print,
) -> Precomputed:
    """Fill the cache for a campaign's scored candidates, best first, one sandbox run per
    distinct code. Raises LookupError for an unknown campaign, ValueError for a task with
    no drift; SandboxUnavailable (from the backend) stops it."""
    from archive import reads
    from archive.db import reading
    from harness.backends import SandboxUnavailable

    with reading(engine) as session:
        campaign = reads.find_campaign(session, campaign_name)
        if campaign is None:
            raise LookupError(f"no campaign named {campaign_name!r} in this archive")
        if not is_drift_task(campaign.task):
            raise ValueError(
                f"campaign {campaign_name} is on task {campaign.task}, which has no drift to plot"
            )
        task = campaign.task
        ranked = reads.ranking(session, campaign.id, top)
    result, seen = Precomputed(), set()
    todo = [
        (r.id, d)
        for r in ranked
        if (d := cache_key(r.code_hash)) and not (d in seen or seen.add(d))
    ]
    for number, (candidate_id, digest) in enumerate(todo, 1):
        if cache.has(digest):
            result.cached += 1
            continue
        with reading(engine) as session:
            code = reads.code_of(session, candidate_id)
        try:
            cache.store(digest, compute(task, code, sandbox))
            result.computed += 1
            echo(f"[{number}/{len(todo)}] candidate {candidate_id}: landscape cached")
        except SandboxUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 (one candidate's failure does not stop the rest)
            result.failed.append((candidate_id, f"{type(error).__name__}: {error}"))
            echo(
                f"[{number}/{len(todo)}] candidate {candidate_id}: "
                f"no landscape ({type(error).__name__}: {error})"
            )
    return result
