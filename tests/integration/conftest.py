"""A hang report for integration tests.

pytest-timeout (at 15 minutes) shows the threads' stacks, which for an asyncio test is only the event
loop waiting in ``select``: it does not say which ``await`` never returned. Well before it, this
prints every asyncio task's stack and cancels the test, so the failure shows where it waited.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

# The longest integration test takes under 30 s on a 2-core machine under xdist; 180 s is a hang.
HANG_REPORT_SECONDS = float(os.environ.get("SOM_TEST_HANG_REPORT_SECONDS", "180"))


def report_tasks(reason: str) -> None:
    """Print every pending asyncio task of the running loop with its stack, to stderr."""
    tasks = asyncio.all_tasks()
    print(f"\n==== {reason}: {len(tasks)} asyncio tasks ====", file=sys.stderr)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        print(f"---- {task.get_name()}", file=sys.stderr)
        for line in await_chain(task.get_coro()):
            print(f"    {line}", file=sys.stderr)


def await_chain(coro: object) -> list[str]:
    """Where a coroutine waits: each frame of its chain of awaits, outermost first.

    ``Task.print_stack`` shows only the task's own coroutine, not what that awaits.
    """
    lines: list[str] = []
    while coro is not None and len(lines) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        else:
            lines.append(repr(coro))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return lines


def _report_and_cancel(test_name: str) -> None:
    report_tasks(f"{test_name} still running after {HANG_REPORT_SECONDS:.0f} s")
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_name == test_name:
            task.cancel(f"hang report: still running after {HANG_REPORT_SECONDS:.0f} s")


@pytest.fixture(autouse=True)
async def _hang_report(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Report and cancel a test that runs far longer than any should."""
    name = getattr(request.node, "originalname", request.node.name)
    handle = asyncio.get_running_loop().call_later(HANG_REPORT_SECONDS, _report_and_cancel, name)
    try:
        yield
    finally:
        handle.cancel()
