"""The HTTP server under every stand-in (``http.server`` in a thread; no dependency)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, Any]


@dataclass
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    route: str = ""
    raw: bytes = b""  # the body as sent (signatures are computed over it)


@dataclass
class StandIn:
    """Base stand-in: subclasses implement :meth:`route` (a name) and :meth:`answer`."""

    token: str | None = None
    requests: list[Request] = field(default_factory=list)
    acks: list[tuple[str, ...]] = field(default_factory=list)
    _fail: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _hang: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hang_seconds: float = 3.0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what tests call -------------------------------------------------------------------
    def fail(self, route: str, times: int = 1) -> None:
        """Answer HTTP 503 to the next ``times`` requests of ``route``."""
        self._fail[route] += times

    def hang(self, route: str, times: int = 1) -> None:
        """Hold the next ``times`` requests of ``route`` for ``hang_seconds`` (past the client timeout)."""
        self._hang[route] += times

    def routed(self, route: str) -> list[Request]:
        """Requests of one route."""
        return [r for r in self.requests if r.route == route]

    @property
    def base_url(self) -> str:
        """Where the stand-in listens."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        """Listen on a free port in a daemon thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                return

            def _serve(self) -> None:
                owner._handle(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (held requests are released)."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- subclasses ------------------------------------------------------------------------
    def route(self, req: Request) -> str:
        """A name for the request's endpoint (``fail``/``hang`` and ``routed`` use it)."""
        raise NotImplementedError

    def answer(self, req: Request) -> Answer:
        """Status and JSON body (``None``: empty) for a request; called under the lock."""
        raise NotImplementedError

    # --- plumbing --------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        req = Request(h.command, split.path, parse_qs(split.query), dict(h.headers.items()), body, raw=raw)
        req.route = self.route(req)
        with self.lock:
            self.requests.append(req)
            hang = self._hang[req.route] > 0
            if hang:
                self._hang[req.route] -= 1
            fail = not hang and self._fail[req.route] > 0
            if fail:
                self._fail[req.route] -= 1
        if hang:
            self._release.wait(self.hang_seconds)
            status, doc = 503, {"error": "held past the timeout"}
        elif fail:
            status, doc = 503, {"error": {"code": 503, "message": "service unavailable (injected)"}}
        elif self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            status, doc = 401, {"error": "unauthorized"}
        else:
            with self.lock:
                status, doc = self.answer(req)
        data = b"" if doc is None else json.dumps(doc).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass
