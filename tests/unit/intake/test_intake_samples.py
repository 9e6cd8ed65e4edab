"""Every channel sample normalizes to exactly its ``.expected.json`` (every field, every change)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from intake_samples import FIXTURES, expected_files, load_sample

from services.intake.domain.normalizers import NORMALIZERS, normalize
from shared.contracts.canonical import CHANNELS, CanonicalOrderChange

SAMPLE_PATHS = expected_files()


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name.removesuffix('.expected.json')}"


def test_fixtures_are_all_there() -> None:
    vendor = [p for p in SAMPLE_PATHS if p.parent.name != "direct"]
    assert len(vendor) >= 39, "copy /work/shared/channels/samples/ into tests/fixtures/channels/"
    for path in SAMPLE_PATHS:
        assert path.with_name(path.name.replace(".expected.json", ".json")).exists(), path


@pytest.mark.parametrize("expected_path", SAMPLE_PATHS, ids=_id)
def test_sample_normalizes_to_expected(expected_path: Path) -> None:
    sample = load_sample(expected_path)
    result = normalize(sample.channel, sample.body, sample.transport)
    assert result.channel == sample.channel
    assert result.disposition == sample.expected["disposition"]
    got = [c.model_dump(mode="json") for c in result.changes]
    want = sample.expected_changes
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        # field by field first for a readable failure, then the whole object (no extra fields)
        for field in w:
            assert g.get(field) == w[field], f"{sample.name}: {field}"
        assert g == w


@pytest.mark.parametrize("expected_path", SAMPLE_PATHS, ids=_id)
def test_expected_canonical_is_a_valid_canonical_change(expected_path: Path) -> None:
    """The expected objects themselves fit the shared contract (so the contract covers the samples)."""
    for change in load_sample(expected_path).expected_changes:
        assert CanonicalOrderChange.model_validate(change).model_dump(mode="json") == change


def test_every_channel_has_a_normalizer_and_samples() -> None:
    assert set(NORMALIZERS) == set(CHANNELS)
    channels_with_samples = {load_sample(p).channel for p in SAMPLE_PATHS}
    assert channels_with_samples == set(CHANNELS)


def test_stackit_plan_change_without_correlation_context_is_a_create() -> None:
    """The expected transport alone cannot tell a plan change: only the other subscription can.

    With the poller's correlation (``05-change-plan.context.json``) the sample is a
    change_plan (see the parametrized test); without it, it is what the notes say it
    would look like: an independent create.
    """
    expected_path = FIXTURES / "stackit" / "05-change-plan.expected.json"
    expected = json.loads(expected_path.read_text())
    body = (FIXTURES / "stackit" / "05-change-plan.json").read_bytes()
    (change,) = normalize("stackit_marketplace", body, expected["transport"]).changes
    assert (change.action, change.phase, change.replaces_channel_subscription_id) == (
        "create",
        "requested",
        None,
    )
    assert change.effective_at == "2025-10-31T08:02:44.000Z"  # orderedAt
