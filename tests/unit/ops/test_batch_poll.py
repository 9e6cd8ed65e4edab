"""The worker's batch poll: records as soon as there are any, no sleep after an empty wait, no spin."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from shared.messaging import worker

_real_sleep = asyncio.sleep  # the stand-in's waits; the poll's own sleeps are recorded


@dataclass
class _Subscriber:
    batch_timeout_ms: int = 500
    max_records: int = 7


@dataclass
class _Consumer:
    """Answers ``getmany`` with the prepared batches, after ``delay`` seconds each."""

    answers: list[dict[TopicPartition, list[str]]]
    delay: float = 0.0
    calls: list[tuple[int, int]] = field(default_factory=list)

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[str]]:
        self.calls.append((timeout_ms, max_records))
        if self.delay:
            await _real_sleep(self.delay)
        return self.answers.pop(0)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The poll's own sleeps (the consumer stand-in's waits are not counted)."""
    recorded: list[float] = []

    async def sleep(seconds: float, *args: Any) -> None:
        recorded.append(seconds)
        await _real_sleep(0)

    monkeypatch.setattr(worker.asyncio, "sleep", sleep)
    return recorded


async def test_records_of_every_partition_come_back_in_one_tuple(sleeps: list[float]) -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _Consumer([{a: ["a1", "a2"], b: ["b1"]}])
    got = await worker._poll_batch(_Subscriber(), consumer)  # type: ignore[arg-type]
    assert got == ("a1", "a2", "b1")
    assert consumer.calls == [(500, 7)]  # the subscriber's wait and batch size
    assert sleeps == []


async def test_an_empty_wait_returns_without_sleeping_again(sleeps: list[float]) -> None:
    # FastStream's own poll slept as long again after an empty wait; a record arriving then waited.
    consumer = _Consumer([{}], delay=0.02)
    assert await worker._poll_batch(_Subscriber(), consumer) == ()  # type: ignore[arg-type]
    assert sleeps == []


async def test_an_empty_answer_at_once_pauses_instead_of_spinning(sleeps: list[float]) -> None:
    # Without an assignment (a rebalance) getmany answers at once: polling again at once would spin.
    consumer = _Consumer([{}])
    assert await worker._poll_batch(_Subscriber(), consumer) == ()  # type: ignore[arg-type]
    assert sleeps and sleeps[0] > 0
