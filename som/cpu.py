"""CPU used by each process of a running worker set, read from Linux's ``/proc`` (for ``som bench``).

Throughput on a shared two-core machine drifts by a fifth within minutes, and CPU seconds with it,
but each process's share of the CPU per order says where the time goes. The processes of one set
are found from this
one: its child processes running ``som worker NAME`` (the workers, replicas summed under NAME),
its child running the embedded broker (``broker``), and the embedded database's postmaster named
by ``postmaster.pid`` in the set's data directory (``database``: the postmaster, the backends
still running, and through the postmaster's reaped-children counters every backend and
autovacuum worker that ended). ``bench`` is this process itself, ``other`` its other children (the
baseline script); ``machine`` is every CPU's busy time, so what is left beside the named processes
is other load on the machine.
Where ``/proc`` does not exist, nothing is reported.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Stat:
    pid: int
    ppid: int
    seconds: float  # user + system
    children_seconds: float  # of reaped children


def _stat(pid: int) -> _Stat | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces: split after its closing parenthesis.
    fields = text.rsplit(")", 1)[1].split()
    ticks = [int(x) for x in fields[11:15]]  # utime, stime, cutime, cstime
    return _Stat(pid, int(fields[1]), (ticks[0] + ticks[1]) / _TICKS, (ticks[2] + ticks[3]) / _TICKS)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_stats() -> list[_Stat]:
    stats = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            stats.append(st)
    return stats


def _machine_busy_seconds() -> float:
    first = (_PROC / "stat").read_text().splitlines()[0].split()
    # cpu user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    ticks = [int(x) for x in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


def process_name(cmdline: list[str]) -> str | None:
    """What a child process of a set is: a worker's name, ``broker``, or None (something else)."""
    if "worker" in cmdline and "som" in cmdline:
        index = cmdline.index("worker")
        return cmdline[index + 1] if index + 1 < len(cmdline) else None
    if any(arg.startswith("--listener-url") for arg in cmdline):
        return "broker"
    return None


@dataclass
class ProcessCpu:
    """The processes of one set, sampled for their CPU seconds."""

    database_dir: Path | None = None  # the embedded database's ``pgdata`` (None: not embedded)

    @staticmethod
    def available() -> bool:
        """Whether this machine has ``/proc`` to read."""
        return (_PROC / "stat").exists()

    def _postmaster(self) -> int | None:
        if self.database_dir is None:
            return None
        try:
            return int((self.database_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def sample(self) -> dict[str, float]:
        """CPU seconds used so far, by process name (``machine``: all CPUs' busy seconds)."""
        if not self.available():
            return {}
        me = os.getpid()
        postmaster = self._postmaster()
        used: dict[str, float] = defaultdict(float)
        for st in _all_stats():
            if st.pid == me:
                used["bench"] += st.seconds
                used["other"] += st.children_seconds  # children that ended (a baseline run)
            elif st.pid == postmaster:
                used["database"] += st.seconds + st.children_seconds
            elif st.ppid == postmaster and postmaster is not None:
                used["database"] += st.seconds
            elif st.ppid == me:
                used[process_name(_cmdline(st.pid)) or "other"] += st.seconds + st.children_seconds
        used["machine"] = _machine_busy_seconds()
        return dict(used)

    @staticmethod
    def per_order(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
        """Milliseconds of CPU per order between two samples, by process name.

        A process that used nothing, or was restarted in between (its counters began again), is
        left out.
        """
        if orders <= 0:
            return {}
        return {
            name: round((after[name] - before.get(name, 0.0)) * 1000 / orders, 3)
            for name in sorted(after)
            if after[name] > before.get(name, 0.0)
        }
