"""A real, local OpenAI-compatible HTTP server for tests (standard library only).

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 at a free port,
in a background thread, and records every request (path, headers, JSON body). What the
next chat request gets is scripted with :meth:`OpenAIStub.push`; when the script is empty
the ``default`` action answers:

- :func:`reply` -- 200 with a chat completion whose assistant text is ``content``;
- :func:`slow` -- the same after sleeping ``delay_s`` (longer than a client timeout);
- :func:`status` -- an HTTP error status (e.g. 500) with an OpenAI-style error body (and a
  ``Retry-After`` header when asked).

"Connection refused" is :meth:`OpenAIStub.stop`: the port is closed and nothing listens.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


#: A valid six-aspect corpus reply for "A dog with a colorful collar" (shape and content), for the corpus tests.
GOOD_CORPUS = {
    "object": "a golden retriever wearing a bright rainbow collar",
    "environment": "on a sunny lawn in a quiet backyard",
    "mood": "playful and joyful",
    "lighting": "warm golden-hour light",
    "quality": "pet photography, sharp focus, 8k",
    "negative": "extra legs, blurry, low quality",
}


@dataclass(frozen=True)
class Action:
    kind: str  # "reply" | "slow" | "status"
    content: str = ""
    delay_s: float = 0.0
    status: int = 200
    #: ``Retry-After`` header of a status reply (seconds), if any.
    retry_after: float | None = None
    #: Error message of a status reply (default ``stub error <status>``).
    message: str = ""


def reply(content: str) -> Action:
    return Action("reply", content=content)


def slow(content: str, delay_s: float) -> Action:
    return Action("slow", content=content, delay_s=delay_s)


def status(code: int, retry_after: float | None = None, message: str = "") -> Action:
    return Action("status", status=code, retry_after=retry_after, message=message)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float


def completion(content: str, model: str = "stub-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class OpenAIStub:
    """The server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, default: Action | Callable[[Any], Action] = reply("{}"), owned_by: str = "stub"):
        self.default = default
        self.owned_by = owned_by
        self.requests: list[Recorded] = []
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control --

    @property
    def url(self) -> str:
        """Base URL for an OpenAI client (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(actions)

    @property
    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def start(self) -> "OpenAIStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

            def _record(self, body: Any) -> None:
                with stub._lock:
                    stub.requests.append(
                        Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._record(None)
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model", "owned_by": stub.owned_by}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                self._record(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                with stub._lock:
                    action = stub._script.popleft() if stub._script else None
                if action is None:
                    action = stub.default(body) if callable(stub.default) else stub.default
                if action.kind == "status":
                    headers = {"Retry-After": f"{action.retry_after:g}"} if action.retry_after is not None else None
                    message = action.message or f"stub error {action.status}"
                    self._send(action.status, {"error": {"message": message, "type": "server_error"}}, headers)
                    return
                if action.kind == "slow":
                    if stub._stopping.wait(action.delay_s):
                        return
                self._send(200, completion(action.content, model=body.get("model", "stub-model") if isinstance(body, dict) else "stub"))

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port (later requests get 'connection refused')."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
