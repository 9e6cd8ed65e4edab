"""FORMATS.md section 8a, rule by rule, through ``som intake normalize`` (the CLI an operator runs).

The rule fixtures (``tests/fixtures/channels/<channel>/1N-*.json``) are written from the rule
text (``tests/fixtures/tools/make_rule_fixtures.py``); every sample, rule fixture or not, goes
through the CLI here and must print exactly its expected canonical change. Unit tests of the
pure pieces each rule needs follow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from intake_samples import FIXTURES, expected_files, load_sample
from typer.testing import CliRunner

from services.intake.domain.normalizers.gcp_marketplace import product_id
from services.intake.domain.normalizers.stackit_marketplace import renewal_start
from services.intake.domain.snapshots import NOT_SEEN, Known, known_from_transport, snapshot_step
from som.cli import app

RULE_FIXTURES = [p for p in expected_files() if int(p.name.split("-")[0]) >= 10 and p.parent.name != "direct"]


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name.removesuffix('.expected.json')}"


def test_every_rule_has_fixtures() -> None:
    notes = " ".join(n for p in RULE_FIXTURES for n in json.loads(p.read_text())["notes"])
    for rule in range(1, 11):
        if rule == 8:  # accounts: covered by the Omnistrate fixture below
            assert "rules 8 and 9" in notes
        elif rule != 9:
            assert f"rule {rule}" in notes or f"rules {rule} " in notes, f"8a rule {rule} has no fixture"
    assert "rule 9" in notes or "rules 2 and 9" in notes


@pytest.mark.parametrize("expected_path", RULE_FIXTURES, ids=_id)
def test_rule_fixture_through_the_cli(expected_path: Path, tmp_path: Path) -> None:
    sample = load_sample(expected_path)
    transport = tmp_path / "transport.json"
    transport.write_text(json.dumps(sample.transport or {}))
    payload = expected_path.with_name(expected_path.name.replace(".expected.json", ".json"))
    result = CliRunner().invoke(
        app,
        [
            "intake",
            "normalize",
            "--channel",
            sample.channel,
            "--no-verify",
            "--transport",
            str(transport),
            str(payload),
        ],
    )
    out = json.loads(result.stdout[: result.stdout.rindex("]") + 1])
    got = [entry["change"] for entry in out]
    assert got == sample.expected_changes, sample.expected["notes"]


# --- the pure pieces --------------------------------------------------------------------------


def test_snapshot_mapping_by_what_the_receiver_knows() -> None:
    assert snapshot_step("active", NOT_SEEN) == ("create", "effective")
    assert snapshot_step("trialing", NOT_SEEN) == ("create", "effective")
    assert snapshot_step("pending", NOT_SEEN) == ("create", "requested")
    assert snapshot_step("active", Known(True, "pending")) == ("activate", "effective")
    assert snapshot_step("trialing", Known(True, "pending")) == ("activate", "effective")
    assert snapshot_step("active", Known(True, "active")) == ("refresh", "effective")
    assert snapshot_step("cancelled", Known(True, "pending")) == ("refresh", "effective")
    assert snapshot_step(None, Known(True, None)) == ("refresh", "effective")


@given(st.sampled_from(["pending", "trialing", "active", "cancel_scheduled", "suspended", "cancelled", None]))
def test_a_known_subscription_is_never_created_again(status: str | None) -> None:
    for known in (Known(True, None), Known(True, "active"), Known(True, "pending")):
        assert snapshot_step(status, known)[0] != "create"  # type: ignore[arg-type]


def test_known_state_from_the_transport() -> None:
    assert known_from_transport({}) is None
    assert known_from_transport({"known_subscription": None}) == NOT_SEEN
    assert known_from_transport({"known_subscription": {"status": " Pending "}}) == Known(True, "pending")
    assert known_from_transport({"known_subscription": {}}) == Known(True, None)


def test_stackit_renewal_starts_the_new_period() -> None:
    assert renewal_start("2025-07-02T00:00:00.000Z", "2025-07-01T23:59:59.000Z") == "2025-07-02T00:00:00.000Z"
    # validFrom not moved (still the original start): the second after the old end
    assert renewal_start("2025-06-02T10:16:02.000Z", "2025-07-01T23:59:59.000Z") == "2025-07-02T00:00:00.000Z"
    assert renewal_start(None, "2025-12-31T23:59:59.000Z") == "2026-01-01T00:00:00.000Z"
    # an exclusive end (whole minute) is already the next period's start
    assert renewal_start(None, "2025-08-01T00:00:00.000Z") == "2025-08-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("external", "path", "want"),
    [
        ("ext.example", "providers/p/products/x", "ext.example"),
        (None, "providers/p/products/warehouse", "warehouse"),
        (None, "products/warehouse", "warehouse"),
        (None, "projects/p/services/s/privateOffers/po/quotes/q", None),
        (None, "providers/p/offers/o-1", None),
        (None, "warehouse", "warehouse"),
        (None, None, None),
    ],
)
def test_gcp_product_id(external: str | None, path: str | None, want: str | None) -> None:
    assert product_id(external, path) == want


def test_fixture_folder_is_the_shared_one() -> None:
    assert (FIXTURES / "stackit" / "10-renew.json").exists()
