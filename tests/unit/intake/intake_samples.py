"""Shared helpers of the intake unit tests: the channel sample fixtures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.intake.domain import stackit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "channels"


@dataclass(frozen=True)
class Sample:
    """One payload with its expected meaning."""

    name: str  # "<dir>/<nn-action>"
    channel: str
    body: bytes
    expected: dict[str, Any]
    transport: dict[str, Any] | None  # the transport to normalize with (see build_transport)

    @property
    def expected_changes(self) -> list[dict[str, Any]]:
        """``canonical`` as a list: an object is one change, a list several, null none."""
        canonical = self.expected["canonical"]
        if canonical is None:
            return []
        return list(canonical) if isinstance(canonical, list) else [canonical]


def expected_files() -> list[Path]:
    """Every ``*.expected.json`` under the fixtures (a new sample is picked up automatically)."""
    return sorted(FIXTURES.glob("*/*.expected.json"))


def build_transport(expected_path: Path, expected: dict[str, Any], body: bytes) -> dict[str, Any] | None:
    """The transport for a sample: the expected file's, or the poller's when a context file says so.

    A ``<name>.context.json`` beside a STACKIT sample names the stored snapshots the poller
    knows; the transport is then built by the real diff function (and must contain the
    expected file's transport).
    """
    context_path = expected_path.with_name(expected_path.name.replace(".expected.json", ".context.json"))
    transport = expected.get("transport")
    if not context_path.exists():
        return transport
    context = json.loads(context_path.read_text())
    others = [json.loads((expected_path.parent / n).read_text()) for n in context.get("stored_snapshots", [])]
    previous = context.get("previous_snapshot")
    poll = (transport or {}).get("poll")
    publication = stackit.diff_snapshot(previous, json.loads(body), others=others, poll=poll)
    assert publication is not None, f"{context_path}: the poller would publish nothing"
    for key, value in (transport or {}).items():
        assert publication.transport.get(key) == value, f"{context_path}: transport[{key!r}] differs"
    return publication.transport


def load_sample(expected_path: Path) -> Sample:
    """A sample from its expected file path."""
    expected = json.loads(expected_path.read_text())
    body = expected_path.with_name(expected_path.name.replace(".expected.json", ".json")).read_bytes()
    name = f"{expected_path.parent.name}/{expected_path.name.removesuffix('.expected.json')}"
    transport = build_transport(expected_path, expected, body)
    return Sample(name=name, channel=expected["channel"], body=body, expected=expected, transport=transport)


def all_samples() -> list[Sample]:
    """Every sample under the fixtures."""
    return [load_sample(p) for p in expected_files()]
