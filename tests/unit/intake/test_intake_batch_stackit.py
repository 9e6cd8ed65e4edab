"""Partner CSV rows and the STACKIT poller's snapshot diff."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from intake_samples import FIXTURES

from services.intake.domain.batch import COLUMNS, parse_csv, parse_row
from services.intake.domain.normalizers import normalize
from services.intake.domain.stackit import diff_listing, diff_snapshot, transport_headers

HEADER = ",".join(
    [
        "order_id",
        "customer_id",
        "customer_email",
        "customer_region",
        "account_id",
        "plan",
        "quantity",
        "billing_interval",
        "currency",
        "effective_at",
        "trial",
        "test",
    ]
)


def csv_of(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def test_good_rows_become_direct_orders_and_changes() -> None:
    (row,) = parse_csv(csv_of("p-1,c-1,a@b.example,eu,acct-1,pro,3,P1M,EUR,2025-03-01T10:00:00Z,false,yes"))
    assert row.ok and row.row_number == 2 and row.order_id == "p-1"
    assert row.change is not None
    assert (row.change.channel, row.change.unit_amount, row.change.amount, row.change.test) == (
        "direct",
        "45.00",
        "135.00",
        True,
    )
    assert row.payload is not None
    # the payload is exactly what the direct channel takes
    assert normalize("direct", row.payload).changes == (row.change,)
    assert json.loads(row.payload)["customer"]["region"] == "eu"


def test_bad_rows_give_reasons_not_exceptions() -> None:
    rows = parse_csv(
        csv_of(
            ",c-1,,eu,,pro,1,P1M,USD,2025-03-01T10:00:00Z,,",  # no order id
            "p-2,c-2,,eu,,,1,P1M,USD,2025-03-01T10:00:00Z,,",  # no plan
            "p-3,c-3,,eu,,pro,three,P1M,USD,2025-03-01T10:00:00Z,maybe,",  # bad quantity and flag
            "p-4,c-4,,eu,,pro,1,monthly,USD,2025-03-01 10:00,,",  # bad interval, zone-less time
            "p-5,c-5,,eu,,pro,1,P1M,USD,2025-03-01T10:00:00Z,,",
            "p-5,c-5,,eu,,pro,1,P1M,USD,2025-03-01T10:00:00Z,,",  # repeated order id
        )
    )
    found = {r.row_number: {(x.code, x.field) for x in r.reasons} for r in rows}
    assert found[2] == {("MISSING_FIELD", "order_id")}
    assert found[3] == {("MISSING_FIELD", "plan")}
    assert found[4] == {("INVALID_TYPE", "quantity"), ("INVALID_TYPE", "trial")}
    assert found[5] == {("INVALID_VALUE", "billing_interval"), ("INVALID_VALUE", "effective_at")}
    assert found[6] == set()
    assert found[7] == {("DUPLICATE_ORDER", "order_id")}


def test_channel_plan_ids_are_resolved_through_the_channel_mappings() -> None:
    row = {
        "Order ID": "p-9",
        "customer-id": "c-9",
        "source_channel": "stripe",
        "channel_plan_id": "price_1QxR3dKf3ZpL9eWmBizzUSD",
        "quantity": "12",
        "effective_at": "2025-03-01T10:00:00Z",
        "unexpected column": "ignored",
    }
    parsed = parse_row(row, row_number=2)
    assert parsed.ok and parsed.change is not None and parsed.change.plan == "enterprise"
    unknown = parse_row({**row, "channel_plan_id": "price_nope"}, row_number=3)
    assert [(r.code, r.field) for r in unknown.reasons] == [("UNKNOWN_PLAN", "channel_plan_id")]
    wrong = parse_row({**row, "source_channel": "fax"}, row_number=4)
    assert [(r.code, r.field) for r in wrong.reasons] == [("INVALID_VALUE", "source_channel")]


def test_file_level_problems() -> None:
    assert [r.code for r in parse_csv("")[0].reasons] == ["CSV_EMPTY"]
    assert [r.code for r in parse_csv("plan,quantity\npro,1\n")[0].reasons] == ["CSV_MISSING_COLUMNS"]
    assert [r.code for r in parse_csv(b"\xff\xfe\x00")[0].reasons] == ["CSV_UNREADABLE"]
    assert parse_csv(b"\xef\xbb\xbf" + csv_of("p-1,c-1,,,,pro,1,P1M,USD,2025-03-01T10:00:00Z,,").encode())[
        0
    ].ok
    assert parse_csv(csv_of("", "   ")) == []  # blank lines are not orders


cells = st.one_of(
    st.text(max_size=12), st.sampled_from(["", "pro", "P1M", "USD", "2025-03-01T10:00:00Z", "1", "x"])
)


@given(rows=st.lists(st.dictionaries(st.sampled_from([*COLUMNS, "junk"]), cells), max_size=4))
def test_arbitrary_rows_never_raise(rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows):
        parsed = parse_row(row, row_number=i + 2)
        assert parsed.ok or parsed.reasons
        assert all(r.code != "INTERNAL_ERROR" for r in parsed.reasons), parsed.reasons


@given(text=st.text(max_size=300))
def test_arbitrary_files_never_raise(text: str) -> None:
    for row in parse_csv(HEADER + "\n" + text):
        assert all(r.code != "INTERNAL_ERROR" for r in row.reasons), row.reasons


# -- STACKIT poller ------------------------------------------------------------------------------


def snap(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / "stackit" / f"{name}.json").read_text())
    return doc


def test_first_seen_is_published_with_a_null_previous_state() -> None:
    pub = diff_snapshot(None, snap("01-create"), poll="GET x")
    assert pub is not None
    assert pub.transport == {"poll": "GET x", "previous_snapshot_lifecycleState": None}
    assert pub.subscription_id == "9e1c4b7a-3d28-4f65-b0a9-c2e7d5f18b34"
    (change,) = normalize("stackit_marketplace", pub.payload, pub.transport).changes
    assert change.action == "create"


def test_unchanged_snapshots_are_not_published_but_relevant_changes_are() -> None:
    active = snap("02-activate")
    assert diff_snapshot(active, active) is None
    renamed = {**active, "product": {**active["product"], "productName": "Renamed"}}
    assert diff_snapshot(active, renamed) is None  # cosmetic
    moved = {**active, "validUntil": "2025-07-31T23:59:59Z"}
    pub = diff_snapshot(active, moved)
    assert pub is not None and pub.transport["previous_snapshot_validUntil"] == "2025-07-01T23:59:59Z"
    (change,) = normalize("stackit_marketplace", pub.payload, pub.transport).changes
    # 8a rule 4: the renewal takes effect at the new period's start
    assert (change.action, change.effective_at) == ("renew", "2025-07-02T00:00:00.000Z")


def test_the_lifecycle_walks_through_the_expected_actions() -> None:
    previous = None
    actions = []
    for name in ("01-create", "02-activate", "03-cancel-scheduled", "04-cancel"):
        pub = diff_snapshot(previous, snap(name))
        assert pub is not None
        (change,) = normalize("stackit_marketplace", pub.payload, pub.transport).changes
        actions.append((change.action, change.phase))
        previous = snap(name)
    assert actions == [
        ("create", "requested"),
        ("activate", "effective"),
        ("cancel", "scheduled"),
        ("cancel", "effective"),
    ]


def test_plan_change_is_correlated_with_the_cancelling_subscription() -> None:
    old, new = snap("03-cancel-scheduled"), snap("05-change-plan")
    pub = diff_snapshot(None, new, others=[old])
    assert pub is not None
    assert pub.transport["replaces_subscription"] == {
        "subscriptionId": "9e1c4b7a-3d28-4f65-b0a9-c2e7d5f18b34",
        "terminatesAt": "2025-10-31T23:59:59Z",
    }
    (change,) = normalize("stackit_marketplace", pub.payload, pub.transport).changes
    assert (change.action, change.replaces_channel_subscription_id, change.effective_at) == (
        "change_plan",
        "9e1c4b7a-3d28-4f65-b0a9-c2e7d5f18b34",
        "2025-11-01T00:00:00.000Z",
    )


def test_no_correlation_across_projects_states_or_when_ambiguous() -> None:
    old, new = snap("03-cancel-scheduled"), snap("05-change-plan")
    other_project = {**old, "projectId": "p-2"}
    still_active = {**old, "lifecycleState": "SUBSCRIPTION_ACTIVE"}
    for others in ([other_project], [still_active], []):
        pub = diff_snapshot(None, new, others=others)
        assert pub is not None and "replaces_subscription" not in pub.transport
    twin = {**old, "subscriptionId": "11111111-2222-3333-4444-555555555555"}
    pub = diff_snapshot(None, new, others=[old, twin])
    assert pub is not None and "replaces_subscription" not in pub.transport
    assert pub.transport["replaces_candidates"] == sorted([old["subscriptionId"], twin["subscriptionId"]])


def test_listing_diff_uses_the_same_poll_for_correlation() -> None:
    old_active, old_cancelling, new = snap("02-activate"), snap("03-cancel-scheduled"), snap("05-change-plan")
    stored = {old_active["subscriptionId"]: old_active}
    pubs = diff_listing(stored, [old_cancelling, new], poll="LIST")
    assert [p.subscription_id for p in pubs] == [old_cancelling["subscriptionId"], new["subscriptionId"]]
    assert pubs[1].transport["replaces_subscription"]["subscriptionId"] == old_cancelling["subscriptionId"]
    stored_after = {s["subscriptionId"]: s for s in (old_cancelling, new)}
    assert diff_listing(stored_after, [old_cancelling, new]) == []


def test_transport_headers_round_trip_through_json() -> None:
    pub = diff_snapshot(None, snap("05-change-plan"), others=[snap("03-cancel-scheduled")], poll="GET y")
    assert pub is not None
    headers = pub.headers()
    assert headers == transport_headers(pub.transport)
    assert {k.removeprefix("poll."): json.loads(v) for k, v in headers.items()} == pub.transport
