"""The worker's decision without I/O (services.intake.pipeline) and `som intake normalize`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from intake_samples import FIXTURES, all_samples
from typer.testing import CliRunner

from services.intake.domain.batch import parse_csv
from services.intake.domain.signatures import sign_shopify, sign_stripe
from services.intake.pipeline import (
    channel_secrets,
    check_signature,
    command_for,
    interpret,
    parse_secrets,
)
from shared.catalog import cached_catalog
from shared.contracts.commands import CreateParams
from som.cli import app

CATALOG = cached_catalog(None)


def _sample(name: str) -> tuple[bytes, dict]:
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return (FIXTURES / f"{name}.json").read_bytes(), expected


def test_secrets_setting_allows_rotation_and_only_configured_channels_are_checked() -> None:
    assert parse_secrets(" a , ,b ") == ["a", "b"]
    assert channel_secrets("whsec_1,whsec_2", None) == {"stripe": ["whsec_1", "whsec_2"]}
    body = b'{"id": "evt_1"}'
    assert check_signature("stripe", body, {}, {}, now=0) is None  # nothing configured: nothing checked
    assert check_signature("azure_marketplace", body, {}, {"azure_marketplace": ["x"]}, now=0) is None


def test_signature_findings_use_the_given_receipt_time() -> None:
    body, secret, t = b'{"id": "evt_1"}', "whsec_s", 1_741_962_906
    headers = {"headers": {"stripe-signature": sign_stripe(body, secret, t)}}  # case-insensitive lookup
    secrets = {"stripe": ["old", secret]}
    assert check_signature("stripe", body, headers, secrets, now=t + 10) is None
    expired = check_signature("stripe", body, headers, secrets, now=t + 3600)
    assert expired is not None and expired.code == "SIGNATURE_EXPIRED"
    forged = check_signature("stripe", body + b" ", headers, secrets, now=t)
    assert forged is not None and forged.code == "SIGNATURE_INVALID"
    missing = check_signature("shopify", body, {"headers": {}}, {"shopify": [secret]}, now=t)
    assert missing is not None and missing.code == "SIGNATURE_MISSING"
    good = {"headers": {"X-Shopify-Hmac-Sha256": sign_shopify(body, secret)}}
    assert check_signature("shopify", body, good, {"shopify": [secret]}, now=t) is None


def test_every_sample_is_interpreted_as_the_expected_file_says() -> None:
    for sample in all_samples():
        meaning = interpret(sample.channel, sample.body, sample.transport, catalog=CATALOG)
        assert meaning.disposition == sample.expected["disposition"], sample.name
        assert [v.change.model_dump(mode="json") for v in meaning.verdicts] == sample.expected_changes, (
            sample.name
        )
        for entry in meaning.as_list():
            assert entry["disposition"] == meaning.disposition


def test_domain_rejections_by_design_and_manual_approval() -> None:
    body, expected = _sample("stripe/03-change-plan")
    [verdict] = interpret("stripe", body, expected.get("transport"), catalog=CATALOG).verdicts
    assert not verdict.accepted and [r.code for r in verdict.reasons] == ["QUANTITY_OUT_OF_BOUNDS"]
    assert verdict.command is None
    body, expected = _sample("omnistrate/01-create")
    [verdict] = interpret("omnistrate", body, expected.get("transport"), catalog=CATALOG).verdicts
    assert verdict.accepted and verdict.command == "create"
    assert isinstance(verdict.params, CreateParams) and verdict.params.approval == "manual"


def test_stackit_plan_change_carries_the_replaced_id_into_the_command() -> None:
    body, expected = _sample("stackit/05-change-plan")
    old = json.loads((FIXTURES / "stackit" / "03-cancel-scheduled.json").read_text())
    transport = {
        **expected["transport"],
        "replaces_subscription": {
            "subscriptionId": old["subscriptionId"],
            "terminatesAt": old["terminatesAt"],
        },
    }
    [verdict] = interpret("stackit_marketplace", body, transport, catalog=CATALOG).verdicts
    # the replaced id is the worker's business (it maps it onto the same subscription), not the command's
    assert verdict.change.replaces_channel_subscription_id == old["subscriptionId"]
    assert verdict.command == "change_plan"
    assert (
        command_for(verdict.change, verdict.policy, plan_id=verdict.plan_id, catalog=CATALOG)
        == verdict.params
    )


def test_unparseable_and_invalid_payloads() -> None:
    dead = interpret("direct", b"{not json", None, catalog=CATALOG)
    assert (dead.disposition, dead.error_code, dead.accepted) == ("dead_letter", "NOT_JSON", False)
    invalid = interpret("direct", b'{"order_id": "o-1", "plan": "pro"}', None, catalog=CATALOG)
    assert invalid.disposition == "rejected" and {r.code for r in invalid.reasons} == {"MISSING_FIELD"}
    assert invalid.as_list()[0]["outcome"] == "rejected"


def test_batch_channel_option_resolves_channel_plan_ids() -> None:
    text = "order_id,customer_id,channel_plan_id,effective_at\np-1,c-1,price_1QxR2aKf3ZpL9eWmTeamUSD,2025-03-01T10:00:00Z\n"
    [without] = parse_csv(text)
    assert not without.ok and without.reasons[0].field == "source_channel"
    [row] = parse_csv(text, default_source_channel="stripe")
    assert row.ok and row.change is not None and row.change.plan == "pro"
    explicit = text.replace("channel_plan_id,", "channel_plan_id,source_channel,").replace(
        "USD,", "USD,stripe,"
    )
    [row] = parse_csv(explicit, default_source_channel="azure_marketplace")  # the row's own column wins
    assert row.ok


runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["intake", "normalize", *args])
    return result.exit_code, result.stdout


def test_normalize_command_prints_the_workers_interpretation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOM_STRIPE_WEBHOOK_SECRET", raising=False)
    code, out = _cli(
        "--channel",
        "stripe",
        str(FIXTURES / "stripe/01-create.json"),
        "--transport",
        str(FIXTURES / "stripe/01-create.expected.json"),
    )
    assert code == 0
    [entry] = json.loads(out)
    assert (entry["disposition"], entry["outcome"], entry["plan_id"], entry["command"]) == (
        "apply",
        "accepted",
        "pro",
        "create",
    )
    code, out = _cli("--channel", "stackit", str(FIXTURES / "stackit/01-create.json"))  # folder names work
    assert code == 0 and json.loads(out)[0]["change"]["channel"] == "stackit_marketplace"


def test_normalize_command_exit_codes(tmp_path: Path) -> None:
    code, out = _cli("--channel", "stripe", str(FIXTURES / "stripe/03-change-plan.json"))
    assert code == 1 and json.loads(out)[0]["reasons"][0]["code"] == "QUANTITY_OUT_OF_BOUNDS"
    broken = tmp_path / "broken.json"
    broken.write_bytes(b"\xff\xfe not utf-8")
    code, out = _cli("--channel", "direct", str(broken))
    assert code == 1 and json.loads(out)[0]["disposition"] == "dead_letter"
    assert _cli("--channel", "nope", str(broken))[0] == 2
    assert _cli("--channel", "direct", str(tmp_path / "missing.json"))[0] == 2
    (tmp_path / "t.json").write_text("[1, 2]")
    assert _cli("--channel", "direct", str(broken), "--transport", str(tmp_path / "t.json"))[0] == 2


def test_normalize_command_checks_signatures_where_a_secret_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from shared.settings import get_settings

    body = (FIXTURES / "stripe/01-create.json").read_bytes()
    now = int(time.time())
    transport = tmp_path / "transport.json"
    transport.write_text(json.dumps({"headers": {"Stripe-Signature": sign_stripe(body, "whsec_t", now)}}))
    monkeypatch.setenv("SOM_STRIPE_WEBHOOK_SECRET", "whsec_t")
    get_settings.cache_clear()
    try:
        payload = str(FIXTURES / "stripe/01-create.json")
        assert _cli("--channel", "stripe", payload, "--transport", str(transport))[0] == 0
        code, out = _cli(
            "--channel", "stripe", payload, "--transport", str(transport), "--received-at", str(now + 3600)
        )
        assert code == 1 and json.loads(out)[0]["reasons"][0]["code"] == "SIGNATURE_EXPIRED"
        assert _cli("--channel", "stripe", payload, "--no-verify")[0] == 0
    finally:
        get_settings.cache_clear()
