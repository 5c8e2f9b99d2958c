"""A local OpenAI-compatible chat-completions server that plays back recorded replies.

Tests point litellm's real HTTP client at it (api_base = server.base_url), so every request
goes over a socket exactly as it would to a paid API, and the server keeps what it received
so a test can read the prompts that were sent.
"""

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from requests.structures import CaseInsensitiveDict

COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass
class Reply:
    """One recorded reply: an HTTP status, a JSON (or raw text) body, headers, and a delay
    before anything is written (longer than the client's timeout = a timed-out call)."""

    status: int = 200
    body: dict | str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class ReceivedRequest:
    path: str
    # HTTP header names are case-insensitive (newer clients send them lowercase)
    headers: CaseInsensitiveDict
    body: dict

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])

    @property
    def prompt_text(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages)


def completion(
    content: str,
    *,
    prompt_tokens: int = 120,
    completion_tokens: int = 80,
    model: str = "recorded-model",
) -> Reply:
    """A well-formed chat completion carrying `content`, with token usage."""
    return Reply(
        body={
            "id": "chatcmpl-recorded",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def prose_only() -> Reply:
    """A completion without any code in it."""
    return completion(
        "I think a smoother penalty would help, for example a quadratic one near "
        "ratio 1. Let me know if you want me to write it.",
        completion_tokens=31,
    )


def rate_limited(retry_after: str = "1") -> Reply:
    return Reply(
        status=429,
        headers={"Retry-After": retry_after},
        body={
            "error": {
                "message": "Rate limit reached",
                "type": "rate_limit_error",
                "code": "rate_limit",
            }
        },
    )


def server_error() -> Reply:
    return Reply(status=500, body={"error": {"message": "internal error", "type": "server_error"}})


def unauthorized() -> Reply:
    return Reply(
        status=401,
        body={
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )


def delayed(seconds: float, reply: Reply | None = None) -> Reply:
    reply = reply or completion("too late")
    return Reply(status=reply.status, body=reply.body, headers=dict(reply.headers), delay=seconds)


class RecordedServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping on a delayed reply must not block shutdown
    block_on_close = False

    def __init__(self, replies: list[Reply]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = deque(replies)
        self.requests: list[ReceivedRequest] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def add(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self, request: ReceivedRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.popleft()
        # An unplanned request is a test bug; answer so that it shows rather than hangs.
        return Reply(
            status=400,
            body={"error": {"message": "no recorded reply left", "type": "invalid_request_error"}},
        )


class _Handler(BaseHTTPRequestHandler):
    server: RecordedServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path not in COMPLETION_PATHS:
            self._write(Reply(status=404, body={"error": {"message": f"no route {self.path}"}}))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"unparsable": raw.decode("utf-8", "replace")}
        reply = self.server.next_reply(
            ReceivedRequest(self.path, CaseInsensitiveDict(self.headers.items()), body)
        )
        if reply.delay:
            time.sleep(reply.delay)
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        data = payload.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on a delayed reply
            pass

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass


@contextlib.contextmanager
def recorded_server(replies: list[Reply] = ()) -> Iterator[RecordedServer]:
    """A running server on a free local port that answers with `replies` in order."""
    server = RecordedServer(list(replies))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def bad_diff() -> Reply:
    """A diff whose SEARCH text is nowhere in the parent."""
    return completion(
        "<<<<<<< SEARCH\n    return something_that_is_not_there(ratio)\n=======\n"
        "    return jnp.zeros_like(ratio)\n>>>>>>> REPLACE\n"
    )
