"""The trusted side's calls to the scorer (`harness/scorer.py`), through warm processes.

A scorer process imports JAX and compiles the evaluation program once, then scores request
after request (`python -m harness.scorer --serve`); that start-up was a quarter of a smoke
evaluation's wall time. Processes are pooled, one per concurrent caller (the campaign's
evaluator threads), and each is used by one caller at a time. One that fails, times out or
answers anything but a verdict line is killed and never reused: the next call starts a
fresh one. A scorer only ever reads artifacts as data (never candidate code), so what one
request held cannot reach the next. Each exits when its caller's end of the pipe closes,
so a killed campaign leaves none behind.
"""

import atexit
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sandbox.vocabulary import Fidelity, Status

SCORER_SECONDS = 900.0
STDERR_TAIL = 1500


class ScorerFailed(Exception):
    """The process ended or answered something other than a verdict line."""


class _Scorer:
    """One warm scorer process and its pipes; one request at a time."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness.scorer", "--serve"],
            # On a GPU host it shares the device with the sandboxes: no up-front allocation.
            env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self.pending = b""

    def ask(self, request: Path, timeout: float) -> list:
        """The verdicts for one request file; TimeoutError or ScorerFailed otherwise."""
        self.stderr.seek(0)
        self.stderr.truncate()  # the file's offset is shared with the process: it writes anew
        try:
            self.process.stdin.write(f"{request}\n".encode())
            self.process.stdin.flush()
        except OSError as error:
            raise ScorerFailed(self.tail() or str(error)) from error
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while b"\n" not in self.pending:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise TimeoutError
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                if not chunk:
                    self.process.wait()
                    raise ScorerFailed(self.tail())
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as error:
            raise ScorerFailed(
                self.tail() or line[-STDERR_TAIL:].decode(errors="replace")
            ) from error

    def tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-STDERR_TAIL:].decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()
        self.stderr.close()


_idle: list[_Scorer] = []
_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child must not share its parent's scorers (two callers on one pipe)."""
    global _lock
    _idle.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _ask(request: Path, timeout: float) -> list:
    """The verdicts from a pooled scorer. One that had served before and fails now may have
    died while idle (the OOM killer, a signal), so the request goes once more to a fresh
    process, whose answer stands: a request never fails for an earlier one's sake."""
    with _lock:
        scorer = _idle.pop() if _idle else None
    try:
        verdicts, scorer = _ask_one(scorer or _Scorer(), request, timeout)
    except ScorerFailed:
        if scorer is None:
            raise
        verdicts, scorer = _ask_one(_Scorer(), request, timeout)
    with _lock:
        _idle.append(scorer)
    return verdicts


def _ask_one(scorer: _Scorer, request: Path, timeout: float) -> tuple[list, _Scorer]:
    try:
        return scorer.ask(request, timeout), scorer
    except BaseException:
        scorer.close()
        raise


@atexit.register
def close_all() -> None:
    """End every idle scorer (they would end anyway when this process's pipes close)."""
    with _lock:
        while _idle:
            _idle.pop().close()


def score(
    request: Path,
    task: str,
    budget: str,
    out_dirs: list[Path],
    eval_seeds: list[int | None],
    training_seeds: list[int],
    fidelity: Fidelity = Fidelity.FULL,
) -> list[dict]:
    """One scorer request for the batch; one verdict per directory (each with its block's
    seeds), each with the scorer's seconds shared out."""
    start = time.monotonic()
    request.write_text(
        json.dumps(
            {
                "task": task,
                "budget": budget,
                "out_dirs": [str(d) for d in out_dirs],
                "eval_seeds": eval_seeds,
                "training_seeds": training_seeds,
                "fidelity": fidelity,
            }
        )
    )

    def everyone(verdict: dict) -> list[dict]:
        seconds = (time.monotonic() - start) / len(out_dirs)
        return [{**verdict, "seconds": seconds} for _ in out_dirs]

    try:
        verdicts = _ask(request, SCORER_SECONDS)
    except TimeoutError:
        return everyone({"status": Status.TIMEOUT, "detail": "the scorer timed out"})
    except ScorerFailed as error:
        return everyone({"status": Status.FAILED, "detail": f"scorer error: {error}"})
    if not (isinstance(verdicts, list) and len(verdicts) == len(out_dirs)):
        return everyone({"status": Status.FAILED, "detail": "scorer error: a malformed answer"})
    seconds = (time.monotonic() - start) / len(out_dirs)
    return [{**verdict, "seconds": seconds} for verdict in verdicts]
