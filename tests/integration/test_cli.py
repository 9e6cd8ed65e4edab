"""The command line as a user meets it: `som up --demo`, exit codes, errors without tracebacks."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from som.bench import free_port_base
from tests.integration.helpers import som_env

pytestmark = pytest.mark.integration


def _env(data_dir: Path) -> dict[str, str]:
    return som_env(SOM_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", COLUMNS="200")


@pytest.mark.slow  # starts its own broker, database and four worker processes
def test_som_up_demo_turns_orders_into_invoices_and_ctrl_c_leaves_nothing_behind() -> None:
    data = Path(tempfile.mkdtemp(prefix="som-up-"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "som",
            "up",
            "--demo",
            "--demo-rate",
            "4",
            "--health-port-base",
            str(free_port_base(4)),
        ],
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    descendants: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        buffer = ""
        while time.monotonic() < deadline:
            buffer = "".join(lines)
            descendants |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            if buffer.count("invoice ") >= 2 and "entitled" in buffer and "rejected" in buffer:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        seen = buffer.splitlines()
        assert "Kafka bootstrap" in buffer and "Database URL" in buffer, buffer[-2000:]
        assert buffer.count("invoice ") >= 2, buffer[-2000:]
        assert "entitled" in buffer and "rejected" in buffer, buffer[-2000:]
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
        rest = "".join(lines)
        assert proc.returncode == 0, rest[-2000:]
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    time.sleep(0.5)
    left = [pid for pid in descendants if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    postgres = [
        p.pid for p in psutil.process_iter(["cmdline"]) if str(data) in " ".join(p.info["cmdline"] or [])
    ]
    shutil.rmtree(data, ignore_errors=True)  # `som up` keeps its database between runs, by design
    assert left == [] and postgres == [], (left, postgres, seen[-20:])


def test_user_mistakes_get_messages_and_exit_codes_not_tracebacks(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    no_system = subprocess.run(
        [sys.executable, "-m", "som", "dlq", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert no_system.returncode == 4 and "som up" in no_system.stderr and "Traceback" not in no_system.stderr
    bad_worker = subprocess.run(
        [sys.executable, "-m", "som", "worker", "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad_worker.returncode == 2 and "unknown worker" in bad_worker.stderr
    bad_scenario = tmp_path / "no-start.yaml"
    bad_scenario.write_text("name: x\nplan: pro\n")  # no start date
    sim = subprocess.run(
        [sys.executable, "-m", "som", "simulate", str(bad_scenario)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sim.returncode == 2 and "start" in sim.stderr and "Traceback" not in sim.stderr
