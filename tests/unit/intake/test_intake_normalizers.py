"""Channel normalizers beyond the samples: tolerance, variants, drops and errors."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from intake_samples import FIXTURES

from services.intake.domain.errors import InvalidOrder, UnparseableInput
from services.intake.domain.normalizers import normalize, region_hint
from shared.contracts.canonical import CanonicalOrderChange


def sample(name: str) -> dict[str, Any]:
    """A sample body as a dict (numbers as Decimal, as the normalizers read them)."""
    return json.loads((FIXTURES / f"{name}.json").read_text(), parse_float=Decimal)


def transport(name: str) -> dict[str, Any] | None:
    expected: dict[str, Any] = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return expected.get("transport")


def encode(doc: Any) -> bytes:
    return json.dumps(doc, default=str).encode()


def one(channel: str, doc: Any, tp: dict[str, Any] | None = None) -> CanonicalOrderChange:
    result = normalize(channel, encode(doc) if not isinstance(doc, bytes) else doc, tp)
    assert result.disposition == "apply", result.drop_reason
    (change,) = result.changes
    return change


def codes(exc: pytest.ExceptionInfo[InvalidOrder]) -> set[tuple[str, str | None]]:
    return {(r.code, r.field) for r in exc.value.reasons}


# -- registry ------------------------------------------------------------------------------------


def test_unknown_channel_is_unparseable() -> None:
    with pytest.raises(UnparseableInput) as exc:
        normalize("myspace", b"{}")
    assert exc.value.reason_code == "UNKNOWN_CHANNEL"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe", "NOT_UTF8"),
        (b"{not json", "NOT_JSON"),
        (b"[1, 2]", "NOT_AN_OBJECT"),
        (b"NaN", "NOT_JSON"),
        (b'{"amount": Infinity}', "NOT_JSON"),
        (b"", "NOT_JSON"),
    ],
)
def test_unparseable_bytes(body: bytes, code: str) -> None:
    with pytest.raises(UnparseableInput) as exc:
        normalize("stripe", body)
    assert exc.value.reason_code == code


def test_utf8_bom_is_accepted() -> None:
    body = b"\xef\xbb\xbf" + (FIXTURES / "gcp" / "02-activate.json").read_bytes()
    assert normalize("gcp_marketplace", body).changes[0].action == "activate"


def test_stale_versions_are_dropped_visibly() -> None:
    doc = sample("omnistrate/03-create-failed")  # contractVersion 3
    stale = normalize("omnistrate", encode(doc), {"last_applied_version": 4})
    assert stale.disposition == "drop_stale" and not stale.changes and "3" in (stale.drop_reason or "")
    same = normalize("omnistrate", encode(doc), {"last_applied_version": "3"})
    assert same.disposition == "apply"


def test_seen_event_ids_are_dropped_as_duplicates() -> None:
    doc = sample("gcp/02-activate")
    result = normalize("gcp_marketplace", encode(doc), {"seen_event_ids": [doc["eventId"]]})
    assert result.disposition == "drop_duplicate" and doc["eventId"] in (result.drop_reason or "")


# -- Azure ---------------------------------------------------------------------------------------


def test_azure_padded_enums_and_zone_less_timestamps() -> None:
    doc = sample("azure/04-suspend")
    doc["action"] = " Suspend "
    doc["timeStamp"] = "2025-08-14T03:12:09.0020031"  # operations may omit Z: UTC per Microsoft
    doc["subscription"]["saasSubscriptionStatus"] = " Suspended "
    doc["unknownFutureField"] = {"nested": [1, 2]}
    change = one("azure_marketplace", doc)
    assert (change.action, change.status_after, change.effective_at) == (
        "suspend",
        "suspended",
        "2025-08-14T03:12:09.002Z",
    )


def test_azure_quantity_empty_string_means_not_per_seat_and_strings_count() -> None:
    doc = sample("azure/02-change-quantity")
    doc["quantity"] = ""
    assert one("azure_marketplace", doc).quantity is None  # not the pre-change subscription.quantity
    doc["quantity"] = " 30 "
    assert one("azure_marketplace", doc).quantity == 30


def test_azure_operation_status_decides_the_phase() -> None:
    doc = sample("azure/03-change-plan")
    doc["status"] = "Succeeded"
    assert one("azure_marketplace", doc).phase == "effective"
    doc["status"] = "Failed"
    assert one("azure_marketplace", doc).phase == "failed"
    doc["status"] = "Conflict"
    assert normalize("azure_marketplace", encode(doc)).disposition == "drop_ignored"


def test_azure_reinstate_and_renew() -> None:
    doc = sample("azure/04-suspend")
    doc["action"], doc["status"] = "Reinstate", "InProgress"
    change = one("azure_marketplace", doc)
    assert (change.action, change.phase, change.status_after) == ("reinstate", "requested", "active")
    doc["action"], doc["status"] = "Renew", "Succeeded"
    assert one("azure_marketplace", doc).action == "renew"


def test_azure_bare_subscription_object_is_a_state_refresh() -> None:
    doc = sample("azure/01-create")["subscription"]
    doc["saasSubscriptionStatus"] = "Subscribed"
    doc["isFreeTrial"] = "true"
    change = one("azure_marketplace", doc)
    # 8a rule 2: a subscribed free trial is trialing
    assert (change.action, change.status_after, change.trial, change.quantity) == (
        "refresh",
        "trialing",
        True,
        15,
    )


def test_azure_missing_subscription_id_is_invalid() -> None:
    doc = sample("azure/05-cancel")
    del doc["subscriptionId"]
    del doc["subscription"]["id"]
    with pytest.raises(InvalidOrder) as exc:
        normalize("azure_marketplace", encode(doc))
    assert ("MISSING_FIELD", "subscriptionId") in codes(exc)


def test_azure_unknown_action_is_dead_lettered() -> None:
    doc = sample("azure/05-cancel")
    doc["action"] = "Transmogrify"
    with pytest.raises(UnparseableInput) as exc:
        normalize("azure_marketplace", encode(doc))
    assert exc.value.reason_code == "UNKNOWN_EVENT_TYPE"


# -- AWS -----------------------------------------------------------------------------------------


def test_aws_raw_sqs_delivery_has_no_id_or_time() -> None:
    inner = json.loads(sample("aws/01-create")["Message"])
    inner["customer-identifier"] = " hT7bQ2kLmZ9"  # AWS's own examples pad it
    inner["isFreeTrialTermPresent"] = "true"
    change = one("aws_marketplace", inner)
    assert change.channel_subscription_id == "4kq8xw2m7n3bz5yt0vp6cd1ra:hT7bQ2kLmZ9"
    assert (change.channel_event_id, change.effective_at, change.trial, change.status_after) == (
        None,
        None,
        True,
        "trialing",
    )


def test_aws_subscribe_fail_and_confirmation() -> None:
    doc = sample("aws/01-create")
    doc["Message"] = json.dumps({"action": "subscribe-fail", "customer-identifier": "c", "product-code": "p"})
    change = one("aws_marketplace", doc)
    assert (change.action, change.phase, change.status_after) == ("create_failed", "failed", "failed")
    doc["Type"] = "SubscriptionConfirmation"
    assert normalize("aws_marketplace", encode(doc)).disposition == "drop_ignored"


def test_aws_sns_message_that_is_not_json_is_unparseable() -> None:
    doc = sample("aws/03-cancel")
    doc["Message"] = "<xml/>"
    with pytest.raises(UnparseableInput):
        normalize("aws_marketplace", encode(doc))


def test_aws_agreement_renewal_replaces_the_previous_agreement() -> None:
    doc = sample("aws/05-create")
    doc["detail"]["agreement"].update(
        {"id": "agmt-new", "intent": "RENEW", "previousAgreementId": "agmt-old"}
    )
    change = one("aws_marketplace", doc)
    assert (change.action, change.channel_subscription_id, change.replaces_channel_subscription_id) == (
        "renew",
        "agmt-new",
        "agmt-old",
    )
    doc["detail"]["agreement"]["intent"] = "REPLACE"
    assert one("aws_marketplace", doc).action == "change_plan"


def test_aws_agreement_ended_by_renewal_is_not_a_cancel() -> None:
    doc = sample("aws/05-create")
    doc["detail-type"] = "Purchase Agreement Ended - Proposer"
    doc["detail"]["agreement"]["status"] = "RENEWED"
    assert normalize("aws_marketplace", encode(doc)).disposition == "drop_ignored"
    doc["detail"]["agreement"]["status"] = "EXPIRED"
    change = one("aws_marketplace", doc)
    assert (change.action, change.effective_at) == ("cancel", "2026-06-01T15:19:48.000Z")  # endTime


def test_aws_agreement_id_falls_back_to_the_resource_arn() -> None:
    doc = sample("aws/06-cancel")
    del doc["detail"]["agreement"]
    assert one("aws_marketplace", doc).channel_subscription_id == "agmt-7rk2m9xq4tvb1n6hz3c8pdl0w"
    doc["resources"] = []
    with pytest.raises(InvalidOrder):
        normalize("aws_marketplace", encode(doc))


# -- GCP -----------------------------------------------------------------------------------------


def push(doc: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(doc).encode()).decode()
    return {
        "message": {"attributes": {}, "data": data, "messageId": "99", "publishTime": "x"},
        "subscription": "projects/p/subscriptions/s",
    }


def test_gcp_pubsub_push_envelope_is_unwrapped() -> None:
    doc = sample("gcp/03-change-plan-requested")
    assert one("gcp_marketplace", push(doc)) == one("gcp_marketplace", doc)


def test_gcp_push_envelope_with_garbage_data() -> None:
    with pytest.raises(UnparseableInput) as exc:
        normalize("gcp_marketplace", encode({"message": {"data": "%%%not base64%%%"}}))
    assert exc.value.reason_code in ("NOT_BASE64", "NOT_JSON")
    bad = {"message": {"data": base64.b64encode(b"[1]").decode()}}
    with pytest.raises(UnparseableInput):
        normalize("gcp_marketplace", encode(bad))


def test_gcp_event_variants() -> None:
    doc = sample("gcp/05-cancel")
    doc["eventType"] = "ENTITLEMENT_PENDING_CANCELLATION"
    change = one("gcp_marketplace", doc)
    assert (change.action, change.phase, change.effective_at) == ("cancel", "scheduled", None)
    doc["eventType"] = "ENTITLEMENT_PLAN_CHANGE_CANCELLED"
    assert one("gcp_marketplace", doc).phase == "withdrawn"
    doc["eventType"] = "ACCOUNT_ACTIVE"
    assert normalize("gcp_marketplace", encode(doc)).disposition == "drop_ignored"
    doc["eventType"] = "ENTITLEMENT_TELEPORTED"
    with pytest.raises(UnparseableInput):
        normalize("gcp_marketplace", encode(doc))


def test_gcp_future_offer_start_wins_over_update_time() -> None:
    doc = sample("gcp/01-create")
    doc["eventType"] = "ENTITLEMENT_OFFER_ACCEPTED"
    doc["entitlement"].update(
        {"newOfferStartTime": "2025-06-01T00:00:00Z", "newOffer": "offer-x", "newPlan": "p"}
    )
    change = one("gcp_marketplace", doc)
    assert (change.effective_at, change.offer_id, change.plan) == ("2025-06-01T00:00:00.000Z", "offer-x", "p")


# -- Stripe --------------------------------------------------------------------------------------


def stripe_item(doc: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = doc["data"]["object"]["items"]["data"][0]
    return item


@pytest.mark.parametrize(
    ("currency", "minor", "unit", "amount"),
    [("jpy", 1500, "1500", "7500"), ("bhd", 12500, "12.500", "62.500"), ("usd", 4900, "49.00", "245.00")],
)
def test_stripe_minor_units_follow_the_currency_exponent(
    currency: str, minor: int, unit: str, amount: str
) -> None:
    doc = sample("stripe/01-create")
    doc["data"]["object"]["currency"] = currency
    price = stripe_item(doc)["price"]
    price.update({"currency": currency, "unit_amount": minor, "unit_amount_decimal": str(minor)})
    change = one("stripe", doc)
    assert (change.currency, change.unit_amount, change.amount) == (currency.upper(), unit, amount)


def test_stripe_unit_amount_decimal_keeps_sub_cent_precision() -> None:
    doc = sample("stripe/01-create")
    stripe_item(doc)["price"]["unit_amount_decimal"] = "4900.5"
    change = one("stripe", doc)
    assert (change.unit_amount, change.amount) == ("49.005", "245.025")  # never rounded to 49.01


def test_stripe_basil_periods_on_items_classify_a_renewal() -> None:
    doc = sample("stripe/02-change-quantity")
    sub = doc["data"]["object"]
    for key in ("current_period_start", "current_period_end"):
        del sub[key]  # removed from the subscription in 2025-03-31.basil
    doc["api_version"] = "2025-03-31.basil"
    item = stripe_item(doc)
    item.update({"quantity": 5, "current_period_start": 1744641305, "current_period_end": 1747233305})
    previous = doc["data"]["previous_attributes"]["items"]["data"][0]
    previous.update({"current_period_start": 1741962905, "current_period_end": 1744641305})
    change = one("stripe", doc)
    assert (change.action, change.effective_at) == ("renew", "2025-04-14T14:35:05.000Z")


def test_stripe_uncancel_and_pause() -> None:
    doc = sample("stripe/04-cancel-scheduled")
    doc["data"]["object"]["cancel_at_period_end"] = False
    doc["data"]["previous_attributes"] = {"cancel_at_period_end": True}
    change = one("stripe", doc)
    assert (change.action, change.status_after) == ("uncancel", "active")
    doc["type"] = "customer.subscription.paused"
    doc["data"]["object"]["status"] = "paused"
    assert one("stripe", doc).action == "suspend"


def test_stripe_other_events_are_ignored_and_unknown_subscription_events_dead_lettered() -> None:
    doc = sample("stripe/01-create")
    doc["type"] = "invoice.paid"
    assert normalize("stripe", encode(doc)).disposition == "drop_ignored"
    doc["type"] = "customer.subscription.trial_will_end"
    assert normalize("stripe", encode(doc)).disposition == "drop_ignored"
    doc["type"] = "customer.subscription.exploded"
    with pytest.raises(UnparseableInput):
        normalize("stripe", encode(doc))


def test_stripe_trialing_and_expanded_customer() -> None:
    doc = sample("stripe/01-create")
    doc["data"]["object"]["status"] = "trialing"
    doc["data"]["object"]["customer"] = {"id": "cus_1", "email": "a@b.example", "name": "A B"}
    change = one("stripe", doc)
    assert (change.status_after, change.trial, change.customer.email) == ("trialing", True, "a@b.example")


def test_stripe_type_errors_are_reported_with_paths() -> None:
    doc = sample("stripe/01-create")
    stripe_item(doc)["quantity"] = "five"
    doc["data"]["object"]["id"] = ["sub"]
    with pytest.raises(InvalidOrder) as exc:
        normalize("stripe", encode(doc))
    assert {
        ("INVALID_TYPE", "data.object.items.data[0].quantity"),
        ("INVALID_TYPE", "data.object.id"),
    } <= codes(exc)


def test_stripe_out_of_order_events_are_stale() -> None:
    doc = sample("stripe/02-change-quantity")
    result = normalize("stripe", encode(doc), {"last_applied_version": doc["created"] + 1})
    assert result.disposition == "drop_stale"


# -- Shopify -------------------------------------------------------------------------------------


def test_shopify_headers_are_case_insensitive() -> None:
    tp = transport("shopify/03-suspend")
    assert tp is not None
    lowered = {"headers": {k.lower(): v for k, v in tp["headers"].items()}}
    assert one("shopify", sample("shopify/03-suspend"), lowered) == one(
        "shopify", sample("shopify/03-suspend"), tp
    )


def test_shopify_without_topic_is_invalid_and_other_topics_ignored() -> None:
    with pytest.raises(InvalidOrder) as exc:
        normalize("shopify", encode(sample("shopify/01-create")))
    assert ("MISSING_FIELD", "headers.X-Shopify-Topic") in codes(exc)
    other = {"headers": {"X-Shopify-Topic": "orders/create"}}
    assert normalize("shopify", encode(sample("shopify/01-create")), other).disposition == "drop_ignored"


def test_shopify_revision_ordering_and_fail_topic() -> None:
    tp = transport("shopify/03-suspend")
    assert tp is not None
    doc = sample("shopify/03-suspend")
    assert (
        normalize("shopify", encode(doc), {**tp, "last_applied_version": "52019377481"}).disposition
        == "drop_stale"
    )
    doc["status"] = "failed"
    change = one(
        "shopify", doc, {"headers": {**tp["headers"], "X-Shopify-Topic": "subscription_contracts/fail"}}
    )
    assert (change.action, change.status_after) == ("suspend", "failed")


def test_shopify_numeric_ids_only() -> None:
    doc = sample("shopify/01-create")
    del doc["admin_graphql_api_id"], doc["admin_graphql_api_customer_id"]
    change = one("shopify", doc, transport("shopify/01-create"))
    assert change.channel_subscription_id == "gid://shopify/SubscriptionContract/28764012587"
    assert change.customer.channel_customer_id == "gid://shopify/Customer/7301458812941"


# -- Cleverbridge --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "net", "quantity", "unit", "amount"),
    [
        ("JPY", "15000.0", 3, "5000", "15000"),
        ("BHD", "12.5", 1, "12.500", "12.500"),
        ("USD", "100.0", 3, None, "100.00"),
    ],  # 100/3 is not exact: no invented unit price
)
def test_cleverbridge_decimal_numbers(
    currency: str, net: str, quantity: int, unit: str | None, amount: str
) -> None:
    doc = sample("cleverbridge/02-renew")
    doc["customerCurrencyId"] = currency
    doc["customerRenewalPrice"]["netPrice"] = Decimal(net)
    doc["subscriptionItems"][0]["quantity"] = quantity
    body = json.dumps(doc, default=str).replace(f'"netPrice": "{net}"', f'"netPrice": {net}', 1).encode()
    change = one("cleverbridge", body)
    assert (change.currency, change.unit_amount, change.amount) == (currency, unit, amount)


def test_cleverbridge_test_orders_and_several_subscriptions_in_one_purchase() -> None:
    doc = sample("cleverbridge/01-create")
    doc["statusId"], doc["status"] = "TST", "Test Order"
    second = json.loads(json.dumps(doc["items"][0], default=str))
    second["runningNumber"] = 2
    second["recurringBilling"]["subscriptionId"] = "S99"
    doc["items"].append(second)
    doc["items"].append({"runningNumber": 3, "productId": 1, "quantity": 1})  # one-off item: no subscription
    changes = normalize("cleverbridge", encode(doc)).changes
    assert [c.channel_subscription_id for c in changes] == ["S81402377", "S99"]
    assert all(c.test for c in changes)
    assert len({c.channel_event_id for c in changes}) == 2  # one dedupe key per change


def test_cleverbridge_scheduled_upgrade_and_ignored_types() -> None:
    doc = sample("cleverbridge/03-change-plan")
    doc["subscriptionItems"][0]["versionActiveDate"] = "2027-04-02T16:20:11.503218"
    change = one("cleverbridge", doc)
    assert (change.action, change.phase, change.effective_at) == (
        "change_plan",
        "scheduled",
        "2027-04-02T16:20:11.503Z",
    )
    doc["meta"]["type"] = "RefundNotification"
    assert normalize("cleverbridge", encode(doc)).disposition == "drop_ignored"
    doc["meta"]["type"] = "SomethingNewNotification"
    with pytest.raises(UnparseableInput):
        normalize("cleverbridge", encode(doc))


def test_cleverbridge_renewal_starts_the_new_period() -> None:
    """8a rule 4: ``renewed`` takes effect at the new period's start, never at ``meta.date``."""
    doc = sample("cleverbridge/02-renew")
    assert one("cleverbridge", doc).effective_at == "2026-04-02T16:20:11.503Z"  # item startDate
    # item startDate missing (or still the first period's): next renewal date minus one interval
    del doc["subscriptionItems"][0]["startDate"]
    doc["nextRenewalDate"] = "2027-02-28T08:00:00.250999"
    doc["intervalMonthCount"], doc["intervalDayCount"] = 1, 3
    assert one("cleverbridge", doc).effective_at == "2027-01-25T08:00:00.250Z"
    doc["subscriptionItems"][0]["startDate"] = doc["startDate"]
    doc["nextRenewalDate"] = "2026-03-31T00:00:00"
    doc["intervalMonthCount"], doc["intervalDayCount"] = 1, 0
    assert one("cleverbridge", doc).effective_at == "2026-02-28T00:00:00.000Z"  # day clamped


def test_cleverbridge_account_is_the_customer_without_a_company() -> None:
    """8a rule 8: with no company in the billing contact, the customer's own id is the account."""
    doc = sample("cleverbridge/01-create")
    assert one("cleverbridge", doc).account.channel_account_id == "Vogt & Kessler Architekten"
    del doc["billingContact"]["company"]
    assert one("cleverbridge", doc).account.channel_account_id == "VK-ARCH-0042"
    renewal = one("cleverbridge", sample("cleverbridge/02-renew"))
    assert renewal.account.channel_account_id == renewal.customer.channel_customer_id == "143871206"


# -- STACKIT and Omnistrate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "state", "action", "phase"),
    [
        (None, "SUBSCRIPTION_ACTIVE", "create", "effective"),
        ("SUBSCRIPTION_INACTIVE", "SUBSCRIPTION_ACTIVE", "reinstate", "effective"),
        ("SUBSCRIPTION_CANCELLING", "SUBSCRIPTION_ACTIVE", "uncancel", "effective"),
        ("SUBSCRIPTION_PENDING", "SUBSCRIPTION_REJECTED", "create_failed", "failed"),
        ("SUBSCRIPTION_PENDING", "SUBSCRIPTION_APPROVAL_TIMED_OUT", "create_failed", "failed"),
        ("SUBSCRIPTION_ACTIVE", "SUBSCRIPTION_INACTIVE", "suspend", "effective"),
        ("SUBSCRIPTION_ACTIVE", "STATE_UNSPECIFIED", "refresh", "effective"),
        ("active", " subscription_cancelled ", "cancel", "effective"),
    ],
)
def test_stackit_transitions(previous: str | None, state: str, action: str, phase: str) -> None:
    doc = sample("stackit/03-cancel-scheduled")
    doc["lifecycleState"] = state
    change = one("stackit_marketplace", doc, {"previous_snapshot_lifecycleState": previous})
    assert (change.action, change.phase) == (action, phase)


def test_stackit_renewal_and_unchanged_snapshot() -> None:
    doc = sample("stackit/02-activate")
    tp = {
        "previous_snapshot_lifecycleState": "SUBSCRIPTION_ACTIVE",
        "previous_snapshot_validUntil": "2025-06-30T23:59:59Z",
    }
    change = one("stackit_marketplace", doc, tp)
    # 8a rule 4: at the new period's start, not the old period's last second
    assert (change.action, change.effective_at) == ("renew", "2025-07-01T00:00:00.000Z")
    same = normalize(
        "stackit_marketplace", encode(doc), {**tp, "previous_snapshot_validUntil": doc["validUntil"]}
    )
    assert same.disposition == "drop_duplicate"


def test_stackit_free_trial_and_bad_rate() -> None:
    doc = sample("stackit/01-create")
    doc["product"]["priceType"] = "FREE_TRIAL"
    assert one("stackit_marketplace", doc).trial is True
    doc["product"]["rate"] = "eighty-nine"
    with pytest.raises(InvalidOrder) as exc:
        normalize("stackit_marketplace", encode(doc))
    assert ("INVALID_AMOUNT", "product.rate") in codes(exc)


def test_omnistrate_sandbox_is_test_and_fulfillment_states_map() -> None:
    doc = sample("omnistrate/01-create")
    doc["channel"] = "SANDBOX"
    assert one("omnistrate", doc).test is True
    doc["eventType"], doc["fulfillmentState"] = "contract.updated", "READY"
    assert one("omnistrate", doc).action == "activate"
    doc["fulfillmentState"] = "WHATEVER"
    with pytest.raises(UnparseableInput):
        normalize("omnistrate", encode(doc))


def test_omnistrate_snapshot_known_state_is_a_refresh() -> None:
    doc = sample("omnistrate/02-activate")
    assert one("omnistrate", doc, {"previous_status": "ACTIVE"}).action == "refresh"
    doc["status"] = "SUSPENDED"
    seen = one("omnistrate", doc, {"previous_status": "ACTIVE"})
    assert (seen.action, seen.phase, seen.status_after) == ("refresh", "effective", "suspended")
    # 8a rule 9: no known state at all (no previous_status, no receiver record) is "not seen
    # before": create, effective, with the snapshot's own status
    unseen = one("omnistrate", doc)
    assert (unseen.action, unseen.phase, unseen.status_after) == ("create", "effective", "suspended")


def test_omnistrate_commit_amount_is_a_contract_total() -> None:
    doc = sample("omnistrate/01-create")
    doc["plan"]["commitAmount"] = "12000.005"  # more precision than USD: kept, never rounded
    change = one("omnistrate", doc)
    assert (change.amount, change.amount_basis, change.unit_amount) == ("12000.005", "contract_commit", None)


# -- direct --------------------------------------------------------------------------------------


def test_direct_defaults_and_catalog_prices() -> None:
    doc = {
        "order_id": "o-1",
        "customer": {"id": "c-1"},
        "plan": "pro",
        "effective_at": "2027-02-01T00:00:00Z",
    }
    change = one("direct", doc)
    # USD P1M x1 by default; pro's USD P1M price changed to 59.00 on 2027-01-01
    assert (change.currency, change.billing_interval, change.quantity, change.unit_amount) == (
        "USD",
        "P1M",
        1,
        "59.00",
    )
    assert (change.channel_subscription_id, change.channel_event_id, change.product) == (
        "o-1",
        "o-1",
        "som-cloud",
    )


def test_direct_unknown_plan_or_unpriced_currency_still_normalizes() -> None:
    doc = {
        "order_id": "o-1",
        "customer": {"id": "c-1"},
        "plan": "platinum",
        "effective_at": "2025-02-01T00:00:00Z",
    }
    change = one("direct", doc)  # validation, not the normalizer, refuses unknown plans
    assert (change.plan, change.unit_amount, change.product) == ("platinum", None, None)


def test_direct_errors_are_reasons() -> None:
    with pytest.raises(InvalidOrder) as exc:
        normalize(
            "direct",
            encode(
                {
                    "order_id": "",
                    "customer": {},
                    "quantity": "many",
                    "currency": "dollars",
                    "effective_at": "2025-01-01T00:00:00",
                    "action": "explode",
                }
            ),
        )
    found = codes(exc)
    assert ("MISSING_FIELD", "plan") in found
    assert ("MISSING_FIELD", "customer.id") in found
    assert ("INVALID_TYPE", "quantity") in found
    assert {f for _, f in found} >= {"order_id", "currency", "effective_at", "action"}


def test_region_hint() -> None:
    doc = {
        "order_id": "o",
        "customer": {"id": "c", "region": "apac"},
        "plan": "pro",
        "effective_at": "2025-01-01Z",
    }
    assert region_hint("direct", encode(doc)) == "apac"
    assert region_hint("direct", b"garbage") is None
    assert region_hint("stripe", b"{}", {"region": "us"}) == "us"


def test_direct_order_carries_the_billing_country_for_tax() -> None:
    doc = sample("direct/01-create")
    doc["customer"]["country"] = "de"
    assert one("direct", doc).customer.country == "DE"  # upper-cased ISO 3166-1 alpha-2
    del doc["customer"]["country"]
    assert one("direct", doc).customer.country is None  # optional: the customer's stored country may apply
    doc["customer"]["country"] = "Germany"
    with pytest.raises(InvalidOrder) as exc:
        normalize("direct", encode(doc))
    assert any(field and "country" in field for _, field in codes(exc)), codes(exc)
