"""Where each worker's CPU goes under `som bench`: py-spy profiles of the four workers, summarised.

Runs ``som bench --orders N [--rate R] --json`` (the embedded set unless configured), waits for the
four worker processes and ``--warmup`` seconds, records each with ``py-spy record --native`` for
``--seconds`` at the same time, and prints per worker:

- busy: the share of samples in which the worker ran. Samples whose innermost frames are a blocking
  call (``epoll_pwait``, a socket ``write``, a lock wait) are not CPU: on two shared cores a worker
  that writes a statement to PostgreSQL is mostly preempted by the backend it woke, and py-spy
  counts that as time in ``write`` (30 % of billing's samples in one run, while ``perf`` put the
  kernel at 3.5 % of the machine for all four workers together);
- each component's share of the busy samples, by the innermost frame that names one (pydantic,
  asyncpg, aiokafka, FastStream, OpenTelemetry, the project's own code, the event loop);
- the project's functions with the largest inclusive share of the busy samples.

With ``--out DIR`` the raw profiles (py-spy's ``raw`` format, flamegraph-ready) stay there.

    .venv/bin/pip install py-spy            # or: pip install -e ".[profile]"
    .venv/bin/python tools/profile_workers.py --orders 20000 --seconds 25 [--json]

A measurement, not a test. py-spy needs ptrace rights over the workers (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from services.registry import WORKERS
from som.cpu import process_name

# Innermost frames that mean "waiting", not "running" (native frames as py-spy names them).
# Writes and sends count as waits: they wake the reader, which on two busy cores preempts the
# writer inside the call. A read wakes nobody, so time in it is the reader's own.
BLOCKING = frozenset(
    {
        "epoll_pwait",
        "epoll_wait",
        "write",
        "__write",
        "writev",
        "send",
        "sendto",
        "sendmsg",
        "futex",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "sem_wait",
        "poll",
        "select",
        "nanosleep",
        "clock_nanosleep",
    }
)

# A frame's component, by a piece of its file name; the first match in this order wins.
COMPONENTS = (
    ("pydantic", ("pydantic/", "pydantic_core")),
    ("asyncpg", ("asyncpg/", "asyncpg.protocol", "pgproto")),
    ("aiokafka", ("aiokafka/",)),
    ("faststream", ("faststream/", "fast_depends/")),
    ("opentelemetry", ("opentelemetry/",)),
    ("project", ("shared/", "services/", "som/")),
    ("event loop", ("asyncio/", "uvloop", "loop.c", "_asynciomodule")),
)


class Shares(TypedDict):
    """A worker's summary as printed: percentages of its busy samples."""

    samples: int
    busy_pct: float
    components_pct: dict[str, float]
    functions_pct: dict[str, float]


@dataclass
class WorkerProfile:
    """One worker's samples, summarised."""

    samples: int = 0
    blocked: int = 0
    components: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)  # project functions, inclusive

    @property
    def busy(self) -> int:
        """Samples in which the worker ran."""
        return self.samples - self.blocked

    def shares(self, top: int = 12) -> Shares:
        """Percentages of the busy samples (components, top project functions)."""
        busy = max(1, self.busy)
        return {
            "samples": self.samples,
            "busy_pct": round(100 * self.busy / max(1, self.samples), 1),
            "components_pct": {k: round(100 * v / busy, 1) for k, v in self.components.most_common()},
            "functions_pct": {k: round(100 * v / busy, 1) for k, v in self.functions.most_common(top)},
        }


def _name(frame: str) -> str:
    """``Class.method (path/file.py:12)`` -> ``Class.method``."""
    return frame.split(" (", 1)[0]


def _file(frame: str) -> str:
    return frame.rsplit(" (", 1)[-1] if " (" in frame else frame


def component_of(frames: list[str]) -> str:
    """The component of a stack: that of its innermost frame naming one ("other" if none does)."""
    for frame in reversed(frames):
        where = _file(frame)
        for component, marks in COMPONENTS:
            if any(mark in where for mark in marks):
                return component
    return "other"


def is_blocked(frames: list[str]) -> bool:
    """True when the innermost frame is a blocking call (the sample is a wait, not CPU)."""
    return bool(frames) and _name(frames[-1]) in BLOCKING


def summarize(lines: Iterable[str]) -> WorkerProfile:
    """Summarise py-spy ``raw`` output: one ``frame;frame;...;innermost COUNT`` line per stack."""
    profile = WorkerProfile()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        profile.samples += count
        if is_blocked(frames):
            profile.blocked += count
            continue
        profile.components[component_of(frames)] += count
        seen: set[str] = set()
        for frame in frames:
            where = _file(frame)
            if not where.startswith(("shared/", "services/")):
                continue
            name = _name(frame)
            if name not in seen:
                seen.add(name)
                profile.functions[name] += count
    return profile


def _worker_pids(root: int, timeout: float) -> dict[str, int]:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, int] = {}
        for child in psutil.Process(root).children(recursive=True):
            try:
                name = process_name(child.cmdline())
            except psutil.Error:
                continue
            if name in WORKERS:
                found.setdefault(name, child.pid)
        if len(found) == len(WORKERS):
            return found
        time.sleep(0.5)
    raise SystemExit(f"the bench's workers did not start within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the bench, profile the workers, print the summary; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=None, help="orders per second (default all at once)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds after the workers start")
    parser.add_argument("--seconds", type=int, default=25, help="how long each worker is sampled")
    parser.add_argument("--rate-hz", type=int, default=100, help="samples per second")
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profiles in this folder")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="som-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    bench_cmd = [sys.executable, "-m", "som", "bench", "--orders", str(args.orders), "--json"]
    if args.rate:
        bench_cmd += ["--rate", str(args.rate)]
    with open(out / "bench.json", "wb") as bench_out:
        bench = subprocess.Popen(bench_cmd, stdout=bench_out, stderr=subprocess.DEVNULL)
        try:
            pids = _worker_pids(bench.pid, timeout=120)
            time.sleep(args.warmup)
            spies = [
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--native",
                        "-p",
                        str(pid),
                        "-d",
                        str(args.seconds),
                        "-r",
                        str(args.rate_hz),
                        "-f",
                        "raw",
                        "-o",
                        str(out / f"{name}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for name, pid in pids.items()
            ]
            for name, spy in zip(pids, spies, strict=True):
                _, err = spy.communicate()
                if spy.returncode != 0:
                    print(f"py-spy on {name} failed: {err.decode(errors='replace').strip()}", file=sys.stderr)
            bench.wait()
        finally:
            if bench.poll() is None:
                bench.terminate()
                bench.wait(30)
    try:
        figures = json.loads((out / "bench.json").read_text())
    except ValueError:
        figures = {}
    workers: dict[str, Shares] = {}
    for name in WORKERS:
        path = out / f"{name}.txt"
        if path.exists():
            with path.open() as raw:
                workers[name] = summarize(raw).shares()
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {"bench": figures, "raw_profiles": str(args.out) if args.out else None, "workers": workers}
            )
        )
        return 0
    cpu = figures.get("cpu_ms_per_order", {}) if isinstance(figures, dict) else {}
    print(f"bench: {figures.get('per_second')} orders/s, CPU ms per order {cpu}")
    for name, shares in workers.items():
        print(f"\n== {name}: busy in {shares['busy_pct']} % of {shares['samples']} samples")
        print(
            "   components (% of busy): " + ", ".join(f"{k} {v}" for k, v in shares["components_pct"].items())
        )
        for fn, pct in shares["functions_pct"].items():
            print(f"   {pct:5.1f} %  {fn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
