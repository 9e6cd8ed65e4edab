"""Every channel's create sample through the real intake and lifecycle workers; webhook signatures.

Real broker, real PostgreSQL. Each sample is published to ``orders.inbound.<channel>`` with its
transport as Kafka headers (``http.<Header>`` / ``poll.<key>``), the way a receiver forwards it.
Sample ids are re-keyed per test run (same shape, new digits) so the test also passes against a
database that has seen the samples before.
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.intake.domain.normalizers import normalize
from services.intake.domain.signatures import sign_stripe
from shared.catalog import cached_catalog
from shared.contracts.envelope import derived_id
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import create_clock
from tests.integration.helpers import TopicReader, publish, running_workers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "channels"

# What each channel's create sample becomes, as policy and catalog say:
#   ("subscription", status, plan) - a subscription in the lifecycle;
#   ("command_rejected", reason)   - intake accepts the order, but its create carries no plan (the channel
#                                    sends none; the plan comes from a vendor lookup not built yet), so the
#                                    lifecycle refuses the command.
EXPECTED: dict[str, tuple[str, ...]] = {
    "aws": ("subscription", "active", "pro"),  # product code -> pro, quantity = plan minimum
    "azure": ("subscription", "active", "pro"),  # team-monthly -> pro, 15 seats
    "cleverbridge": ("subscription", "active", "pro"),  # product 318402 -> pro, 10 seats
    "direct": ("subscription", "active", "pro"),
    "gcp": ("subscription", "active", "pro"),  # no plan in the event: the channel's default plan
    "omnistrate": (
        "subscription",
        "pending_approval",
        "enterprise",
    ),  # policy: approval manual (beta channel)
    "shopify": ("subscription", "active", "pro"),  # no lines in the webhook: the channel's default plan
    "stackit": ("subscription", "active", "pro"),  # team-monthly -> pro
    "stripe": ("subscription", "active", "pro"),  # price_...TeamUSD -> pro, 5 seats
}


def _t(settings: Settings, topic: str) -> str:
    return f"{settings.topic_namespace}{topic}"


def transport_headers(transport: dict[str, Any] | None) -> dict[str, str]:
    """A sample's transport as the Kafka headers a receiver sets (what transport_from_headers reads)."""
    headers: dict[str, str] = {}
    for key, value in (transport or {}).items():
        if key == "headers" and isinstance(value, dict):
            headers.update({f"http.{k}": str(v) for k, v in value.items()})
        else:
            headers[f"poll.{key}"] = json.dumps(value, sort_keys=True)
    return headers


def _mutate(token: str, rng: random.Random) -> str:
    """Same shape, new value: the last six characters get new digits / letters of the same kind."""
    head, tail = token[:-6], token[-6:]
    out = []
    for ch in tail:
        if ch.isdigit():
            out.append(rng.choice("0123456789"))
        elif ch in "abcdef":
            out.append(rng.choice("abcdef"))
        elif ch in "ABCDEF":
            out.append(rng.choice("ABCDEF"))
        elif ch.isalpha():
            out.append(
                rng.choice("abcdefghijklmnopqrstuvwxyz" if ch.islower() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            )
        else:
            out.append(ch)
    return head + "".join(out)


def rekey(
    channel: str, body: bytes, transport: dict[str, Any] | None, rng: random.Random
) -> tuple[bytes, dict]:
    """The sample with fresh subscription and event ids (plan, product and dates untouched)."""
    change = normalize(channel, body, transport).changes[0]
    keep = {change.product, change.plan, change.offer_id}
    tokens: set[str] = set()
    for ident in (change.channel_subscription_id, change.channel_event_id):
        for part in re.split(r"[:/]", ident or ""):
            if (
                len(part) >= 8
                and any(c.isdigit() for c in part)
                and part not in keep
                and "." not in part
                and not re.match(r"\d{4}-\d{2}-\d{2}", part)
            ):
                tokens.add(part)
    text = body.decode()
    blob = json.dumps(transport or {})
    for token in sorted(tokens, key=len, reverse=True):
        new = _mutate(token, rng)
        text, blob = text.replace(token, new), blob.replace(token, new)
    return text.encode(), json.loads(blob)


@pytest.mark.slow  # 23 s, every channel end to end; the normalizers have fast unit tests
async def test_each_channels_create_sample_yields_its_subscription_or_expected_rejection(
    settings: Settings, db: Database
) -> None:
    rng = random.Random()
    catalog = cached_catalog(None)
    clock = f"{settings.topic_namespace}clock"
    await create_clock(db.pool, clock, datetime(2025, 8, 1, tzinfo=UTC))  # renewals do not run on ahead
    cases: dict[str, dict[str, Any]] = {}
    for folder in EXPECTED:
        expected = json.loads((FIXTURES / folder / "01-create.expected.json").read_text())
        body, transport = rekey(
            expected["channel"],
            (FIXTURES / folder / "01-create.json").read_bytes(),
            expected.get("transport"),
            rng,
        )
        change = normalize(expected["channel"], body, transport, catalog=catalog).changes[0]
        cases[folder] = {
            "channel": expected["channel"],
            "body": body,
            "headers": {**transport_headers(transport), "som-test-clock": clock},
            "subscription_id": derived_id(
                "subscription", expected["channel"], change.channel_subscription_id
            ),
        }
    bootstrap = str(settings.kafka_bootstrap)
    started = time.monotonic()
    async with running_workers(settings, db, names=("intake", "lifecycle")):
        async with (
            TopicReader(bootstrap, _t(settings, topics.SUBSCRIPTIONS_COMMAND_REJECTIONS)) as refused,
            TopicReader(bootstrap, _t(settings, topics.ORDERS_REJECTED)) as rejected,
        ):
            for case in cases.values():
                await publish(
                    settings,
                    topics.inbound(case["channel"]),
                    case["body"],
                    key=case["subscription_id"],
                    headers=case["headers"],
                )
            wanted = {c["subscription_id"] for f, c in cases.items() if EXPECTED[f][0] == "subscription"}
            rows: dict[str, Any] = {}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                found = await db.pool.fetch(
                    "SELECT subscription_id, status, plan_id FROM lifecycle.subscriptions "
                    "WHERE subscription_id = ANY($1::text[])",
                    list(wanted),
                )
                rows = {r["subscription_id"]: r for r in found}
                await refused.poll()
                if len(rows) == len(wanted) and len(refused.records) >= 2:
                    break
            await rejected.settle(0.5)
    elapsed = time.monotonic() - started
    refusals = {v["subject"]: v["data"] for v in refused.values()}
    outcome: dict[str, tuple[str, ...]] = {}
    for folder, case in cases.items():
        sid = case["subscription_id"]
        if sid in rows:
            outcome[folder] = ("subscription", rows[sid]["status"], rows[sid]["plan_id"])
        elif sid in refusals:
            outcome[folder] = ("command_rejected", refusals[sid]["reason_code"])
        else:
            outcome[folder] = ("nothing",)
    assert outcome == EXPECTED, f"after {elapsed:.1f}s"
    assert rejected.records == [], "no create sample is refused by intake"


def _stripe_event(sub_id: str, event_id: str) -> bytes:
    sample = json.loads((FIXTURES / "stripe" / "01-create.json").read_text())
    sample["id"] = event_id
    sample["data"]["object"]["id"] = sub_id
    return json.dumps(sample).encode()


async def test_forged_or_unsigned_stripe_payload_is_rejected_before_anything_else(
    settings: Settings, db: Database
) -> None:
    secret = "whsec_test_0123456789"
    signed_settings = settings.model_copy(update={"stripe_webhook_secret": f"whsec_old_rotated,{secret}"})
    suffix = f"{rng_suffix()}"
    good = _stripe_event(f"sub_good{suffix}", f"evt_good{suffix}")
    forged = _stripe_event(f"sub_forged{suffix}", f"evt_forged{suffix}")
    unsigned = _stripe_event(f"sub_unsigned{suffix}", f"evt_unsigned{suffix}")
    replayed = _stripe_event(f"sub_replayed{suffix}", f"evt_replayed{suffix}")
    now = int(time.time())
    # Signed with the right secret, then tampered with (quantity 5 -> 50): the digest no longer matches.
    tampered = forged.replace(b'"quantity": 5', b'"quantity": 50')
    assert tampered != forged
    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(signed_settings, db, names=("intake",)):
        async with (
            TopicReader(bootstrap, _t(settings, topics.ORDERS_REJECTED)) as rejected,
            TopicReader(bootstrap, _t(settings, topics.SUBSCRIPTIONS_COMMANDS)) as commands,
        ):
            await publish(
                settings,
                topics.inbound("stripe"),
                tampered,
                key="forged",
                headers={"http.Stripe-Signature": sign_stripe(forged, secret, now)},
            )
            await publish(settings, topics.inbound("stripe"), unsigned, key="unsigned")
            # Genuinely signed, an hour before the record's timestamp: a replay outside the tolerance.
            await publish(
                settings,
                topics.inbound("stripe"),
                replayed,
                key="replayed",
                headers={"http.Stripe-Signature": sign_stripe(replayed, secret, now - 3600)},
            )
            await publish(
                settings,
                topics.inbound("stripe"),
                good,
                key="good",
                headers={"http.Stripe-Signature": sign_stripe(good, secret, now)},
            )
            await rejected.wait_for(3, timeout=15)
            await commands.wait_for(1, timeout=15)
            await rejected.settle(0.5)
    codes = sorted(r["code"] for v in rejected.values() for r in v["data"]["reasons"])
    assert codes == ["SIGNATURE_EXPIRED", "SIGNATURE_INVALID", "SIGNATURE_MISSING"]
    for v in rejected.values():
        assert v["data"]["channel"] == "stripe"
        assert v["data"]["channel_subscription_id"] is None  # nothing of a forged payload is trusted
    [command] = commands.values()
    # the rotated secret still verifies: the good payload's subscription gets its command
    assert command["data"]["subscription_id"] == derived_id("subscription", "stripe", f"sub_good{suffix}")
    stored = await db.pool.fetchval(
        "SELECT count(*) FROM intake.rejections WHERE channel = 'stripe' AND reasons->0->>'code' LIKE 'SIGNATURE_%' "
        "AND received_at > now() - interval '5 minutes'"
    )
    assert stored >= 3


def rng_suffix() -> str:
    return "".join(random.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(10))
