"""Liveness, readiness and Prometheus metrics over plain HTTP (for Kubernetes probes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Readiness = Callable[[], Awaitable[dict[str, bool]]]
# A service's own GET routes beside the probes: path -> (status, JSON document), or None for 404.
HttpRoutes = Callable[[str], Awaitable[tuple[int, object] | None]]


class HealthServer:
    """``/livez`` (the loop answers), ``/readyz`` (every check true), ``/metrics``, and a service's own
    GET ``routes`` (the entitlements check API)."""

    def __init__(
        self, readiness: Readiness, *, host: str = "0.0.0.0", port: int = 0, routes: HttpRoutes | None = None
    ) -> None:
        self.readiness = readiness
        self.routes = routes
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/livez":
                status, body, ctype = 200, b'{"status":"ok"}', "application/json"
            elif path == "/readyz":
                checks = await self.readiness()
                status = 200 if all(checks.values()) else 503
                body, ctype = json.dumps(checks).encode(), "application/json"
            elif path == "/metrics":
                status, body, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST
            else:
                answer = await self.routes(path) if self.routes is not None else None
                if answer is None:
                    status, body, ctype = 404, b'{"error":"not found"}', "application/json"
                else:
                    status, body, ctype = answer[0], json.dumps(answer[1]).encode(), "application/json"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "Error")
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()
