"""Stopping background tasks: a task that does not stop is named, not waited for forever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.aio import cancel_and_wait

log = logging.getLogger("tests.aio")


async def test_cancels_every_task_and_returns_when_they_ended() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("ended badly")

    tasks = [asyncio.create_task(forever(), name="a"), asyncio.create_task(fails(), name="b")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks, timeout=5, log=log, owner="test")
    assert tasks[0].cancelled() and isinstance(tasks[1].exception(), RuntimeError)


async def test_a_task_that_ignores_its_cancel_is_named_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # what a lost cancel looks like from outside
                continue

    task = asyncio.create_task(stubborn(), name="stubborn-poller")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="tests.aio"):
        await cancel_and_wait([task], timeout=0.2, log=log, owner="stop of billing")
    assert not task.done()
    assert "stop of billing: task stubborn-poller did not stop" in caplog.text
    release.set()
    await task
