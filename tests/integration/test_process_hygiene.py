"""Nothing outlives ``som``: SIGTERM to ``som up``/``som bench`` and SIGKILL of a worker parent.

The tests walk the process tree before the signal (psutil) and check that every process found,
plus the embedded PostgreSQL postmaster (a daemon, not a child), is gone afterwards.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from shared.settings import Settings
from som.embedded import free_port
from tests.integration.helpers import som_env

# Upper bounds for liveness (a process that never exits fails), not performance figures.
SETTLE = 60.0


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = som_env(SOM_DATA_DIR=str(data_dir), SOM_LOG_LEVEL="WARNING")
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    return env


def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"gave up waiting for {what}")


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in parent.children(recursive=True):
        try:
            if "worker" in p.cmdline():
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _postmaster(data_dir: Path) -> psutil.Process | None:
    pidfile = next(data_dir.rglob("postmaster.pid"), None)
    if pidfile is None:
        return None
    try:
        return psutil.Process(int(pidfile.read_text().split()[0]))
    except (psutil.NoSuchProcess, ValueError, IndexError):
        return None


def _signal_and_check(proc: subprocess.Popen[bytes], data_dir: Path, sig: int) -> None:
    parent = psutil.Process(proc.pid)
    tree = parent.children(recursive=True)
    pm = _postmaster(data_dir)
    assert pm is not None, "the embedded postgres should be running"
    tree.append(pm)
    assert len(_workers(parent)) == 4
    proc.send_signal(sig)
    proc.wait(SETTLE)
    _gone, alive = psutil.wait_procs(tree, timeout=SETTLE)
    for p in alive:  # leave nothing behind even when the test fails
        p.kill()
    assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_som_up_stops_everything_on_signal(tmp_path: Path, sig: int) -> None:
    """``som up`` stops workers, broker and database on SIGTERM and SIGHUP."""
    env = _clean_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "som", "up", "--health-port-base", str(free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until(lambda: len(_workers(psutil.Process(proc.pid))) == 4, "four workers")
        _wait_until(lambda: (tmp_path / "endpoints.json").exists(), "endpoints file")
        _signal_and_check(proc, tmp_path, sig)
        assert not (tmp_path / "endpoints.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_som_bench_stops_everything_on_sigterm(tmp_path: Path) -> None:
    """``timeout N som bench`` used to leave four workers running forever."""
    env = _clean_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "som", "bench", "--orders", "100000", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until(lambda: len(_workers(psutil.Process(proc.pid))) == 4, "four workers")
        _signal_and_check(proc, tmp_path, signal.SIGTERM)
        # With every child gone, nobody holds the pipe: a reader such as `| tail -1` sees EOF.
        assert proc.stdout is not None
        proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_exit_when_their_parent_is_sigkilled(settings: Settings) -> None:
    """A parent killed without any cleanup still takes its workers and embedded broker with it."""
    script = textwrap.dedent(
        """
        import sys, time
        from shared.settings import Settings
        from som.embedded import EmbeddedBroker
        from som.runner import WorkerSet, child_env

        broker = EmbeddedBroker()
        broker.start()
        ws = WorkerSet(child_env(Settings()))
        ws.start()
        print(broker.process.pid, *(p.pid for p in ws.processes.values()), flush=True)
        time.sleep(3600)
        """
    )
    env = som_env(
        SOM_KAFKA_BOOTSTRAP=str(settings.kafka_bootstrap),
        SOM_DATABASE_URL=str(settings.database_url),
        SOM_TOPIC_NAMESPACE=settings.topic_namespace,
        SOM_HEALTH_PORT_BASE="0",
        SOM_LOG_LEVEL="WARNING",
    )
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pids = [int(x) for x in parent.stdout.readline().split()]
        assert len(pids) == 5
        children = [psutil.Process(p) for p in pids]
        assert all(c.is_running() for c in children)
        parent.kill()  # SIGKILL: no handler, no finally, no atexit
        parent.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=SETTLE)
        for p in alive:
            p.kill()
        assert alive == [], f"orphans: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()
