"""``som bench`` figures: each stretch of an order's path, and CPU per process from ``/proc``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from som.bench import CHANGE, COMMAND, ENTITLEMENTS, INVOICE, latency_figures
from som.cpu import ProcessCpu, process_name


def test_each_hop_is_timed_between_its_own_two_records() -> None:
    sent = {"a": 10.0, "b": 20.0}
    seen = {
        COMMAND: {"a": 10.1, "b": 20.3},
        CHANGE: {"a": 10.3, "b": 20.4},
        INVOICE: {"a": 10.6, "b": 21.4},
        ENTITLEMENTS: {"a": 10.35},
    }
    f = latency_figures(sent, seen)
    assert f["intake_p50_ms"] == pytest.approx(100.0)  # a: 100 ms, b: 300 ms; the lower middle
    assert f["intake_p99_ms"] == pytest.approx(300.0)
    assert f["lifecycle_p99_ms"] == pytest.approx(200.0)
    assert f["billing_p50_ms"] == pytest.approx(300.0)
    assert f["billing_p99_ms"] == pytest.approx(1000.0)
    assert f["p99_ms"] == pytest.approx(1400.0)  # order to invoice
    assert f["max_ms"] == pytest.approx(1400.0)
    assert f["change_p50_ms"] == pytest.approx(300.0)
    assert f["entitlements_p50_ms"] == pytest.approx(50.0)  # only a has both ends


def test_a_stretch_without_both_ends_has_no_figure() -> None:
    f = latency_figures({"a": 1.0}, {COMMAND: {"a": 1.5}, CHANGE: {}, INVOICE: {}, ENTITLEMENTS: {}})
    assert f["intake_p50_ms"] == pytest.approx(500.0)
    assert math.isnan(f["billing_p50_ms"])
    assert math.isnan(f["p99_ms"])
    assert math.isnan(f["max_ms"])


@pytest.mark.parametrize(
    ("cmdline", "name"),
    [
        (["/venv/bin/python", "-m", "som", "worker", "billing"], "billing"),
        (["/x/tansu-v0.6.0", "broker", "--listener-url", "tcp://127.0.0.1:9"], "broker"),
        (["/x/tansu-v0.6.0", "broker", "--listener-url=tcp://127.0.0.1:9"], "broker"),
        (["/venv/bin/python", "baseline_pipeline.py", "b:9", "dsn", "10"], None),
    ],
)
def test_process_names(cmdline: list[str], name: str | None) -> None:
    assert process_name(cmdline) == name


def test_cpu_per_order_leaves_out_restarted_and_idle_processes() -> None:
    before = {"intake": 5.0, "billing": 9.0, "other": 0.0}
    after = {"intake": 7.0, "billing": 1.0, "other": 0.0}  # billing restarted: its counters began again
    assert ProcessCpu.per_order(before, after, 1000) == {"intake": 2.0}
    assert ProcessCpu.per_order(before, after, 0) == {}


# Sleep first, so that the first sample is taken before any of it burns.
_BURN = "import time\ntime.sleep(0.5)\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\ntime.sleep(30)\n"


@pytest.mark.skipif(not ProcessCpu.available(), reason="needs Linux /proc")
def test_cpu_is_read_per_process_of_the_set(tmp_path: Path) -> None:
    """A child named like a worker and a 'postmaster' with a child of its own: each one's CPU counts."""
    worker = subprocess.Popen([sys.executable, "-c", _BURN.format(s=0.3), "som", "worker", "fake"])
    # The 'postmaster' starts a child that burns, and burns itself.
    postmaster = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {_BURN.format(s=0.3)!r}])\n" + _BURN.format(s=0.2),
        ],
        start_new_session=True,  # its child goes with it: the group is killed at the end
    )
    try:
        (tmp_path / "postmaster.pid").write_text(f"{postmaster.pid}\n{tmp_path}\n")
        cpu = ProcessCpu(tmp_path)
        before = cpu.sample()
        deadline = time.monotonic() + 20
        after = before
        while time.monotonic() < deadline:
            time.sleep(0.2)
            after = cpu.sample()
            if after.get("fake", 0) >= 0.3 and after.get("database", 0) >= 0.5:
                break
        assert after["fake"] >= 0.3
        assert after["database"] >= 0.5  # the 'postmaster' (0.2 s) and its child (0.3 s)
        assert after["machine"] - before["machine"] >= 0.8
    finally:
        os.killpg(postmaster.pid, signal.SIGKILL)
        worker.kill()
        for proc in (worker, postmaster):
            proc.wait()


def test_figures_name_the_interpreter_the_workers_ran_on() -> None:
    """Its build changes the workers' CPU per order by 12-25 %: the figures say which one it was."""
    from som.bench import BenchResult

    figures = BenchResult(
        orders=1, invoices=1, seconds=1.0, per_second=1.0, p50_ms=1.0, p99_ms=1.0, max_ms=1.0, rate=None
    ).as_dict()
    version, executable = str(figures["python"]).split(" ", 1)
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert Path(executable) == Path(os.path.realpath(sys.executable))
