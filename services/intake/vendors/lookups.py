"""Vendor lookups: fill what a channel event leaves out (plan, quantity, prices) from the vendor's API.

The response is normalized by the channel's own normalizer (it recognises the lookup shape), and the
event's change keeps its action, phase, ids and time; what the event did not carry comes from the
lookup. A lookup that fails, or answers without the subscription, raises
:class:`~services.intake.vendors.http.VendorUnavailable` (transient: retry topic): an order never falls
back to a default plan because a vendor was slow. Responses are cached per event, so the retries of
one event ask the vendor once when the first answer came through.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from services.intake.domain.errors import InvalidOrder, UnparseableInput
from services.intake.domain.normalizers import normalize
from services.intake.vendors.clients import AwsMarketplace, GcpProcurement, ShopifyAdmin
from services.intake.vendors.http import VendorRefused, VendorUnavailable
from shared.catalog import Catalog
from shared.contracts.canonical import CanonicalOrderChange

# What a lookup may fill; the event's own value wins where it has one.
FILLED = (
    "product",
    "plan",
    "offer_id",
    "quantity",
    "billing_interval",
    "currency",
    "unit_amount",
    "amount",
    "amount_basis",
)
# AWS agreement ids (EventBridge): their prices come from GetAgreementTerms.
AGREEMENT_PREFIX = "agmt-"
# Actions whose change needs the subscription's plan.
_NEEDS_PLAN = ("create", "activate", "renew", "refresh")


class VendorLookups:
    """The lookup clients that are configured (``None``: that channel is not looked up)."""

    def __init__(
        self,
        *,
        gcp: GcpProcurement | None = None,
        aws: AwsMarketplace | None = None,
        shopify: ShopifyAdmin | None = None,
        catalog: Catalog | None = None,
        cache_size: int = 1024,
    ) -> None:
        self.gcp, self.aws, self.shopify = gcp, aws, shopify
        self.catalog = catalog
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self.calls = 0  # vendor requests made (tests read it to see the cache work)

    def needs(self, channel: str, change: CanonicalOrderChange) -> bool:
        """True when the change lacks its plan (or an AWS agreement its prices) and a client can tell."""
        client = {"gcp_marketplace": self.gcp, "aws_marketplace": self.aws, "shopify": self.shopify}.get(
            channel
        )
        if client is None or change.action not in _NEEDS_PLAN:
            return False
        return change.plan is None or self._aws_terms(channel, change)

    @staticmethod
    def _aws_terms(channel: str, change: CanonicalOrderChange) -> bool:
        """An AWS agreement (EventBridge ids are agreement ids) whose prices the event does not carry."""
        return (
            channel == "aws_marketplace"
            and change.channel_subscription_id.startswith(AGREEMENT_PREFIX)
            and change.amount is None
        )

    async def response(self, channel: str, change: CanonicalOrderChange) -> bytes:
        """The vendor's answer about the change's subscription (raw bytes of the lookup response)."""
        sid = change.channel_subscription_id
        self.calls += 1
        if channel == "gcp_marketplace" and self.gcp is not None:
            return await self.gcp.get_entitlement(sid)
        if channel == "aws_marketplace" and self.aws is not None and self._aws_terms(channel, change):
            return await self.aws.get_agreement_terms(sid)
        if channel == "aws_marketplace" and self.aws is not None:
            product, _, customer = sid.partition(":")
            return await self.aws.get_entitlements(change.product or product, customer)
        if channel == "shopify" and self.shopify is not None:
            return await self.shopify.subscription_contract(sid)
        raise ValueError(f"no lookup for channel {channel!r}")

    async def enrich(
        self, channel: str, change: CanonicalOrderChange, event_key: str, transport: Mapping[str, Any]
    ) -> CanonicalOrderChange:
        """The change with what the vendor's lookup adds (unchanged when no lookup is needed)."""
        if not self.needs(channel, change):
            return change
        key = (event_key, channel, change.channel_subscription_id)
        body = self._cache.get(key)
        if body is None:
            try:
                body = await self.response(channel, change)
            except VendorRefused as exc:
                # 404: the vendor does not know it yet; 401/403: credentials being rotated. Retried either
                # way (and dead-lettered when it never heals), never answered with a default plan.
                raise VendorUnavailable(f"{channel} lookup refused: {exc}") from exc
            self._cache[key] = body
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        try:
            looked = normalize(
                channel, body, {"headers": transport.get("headers") or {}}, catalog=self.catalog
            )
        except (UnparseableInput, InvalidOrder) as exc:
            self._cache.pop(key, None)
            raise VendorUnavailable(f"{channel} lookup answer unreadable: {exc}") from exc
        found = [c for c in looked.changes if c.channel_subscription_id == change.channel_subscription_id]
        if found and found[0].plan is None and change.plan is not None:
            found = [found[0].model_copy(update={"plan": change.plan})]  # terms priced a planned event
        if (not found or found[0].plan is None) and change.action != "create":
            # only a creation needs the plan; a refresh or an activation without one stays as it came
            # (an AWS entitlement-updated after the contract expired has no entitlement left)
            return change
        if not found or found[0].plan is None:
            # the vendor does not know it yet (or knows no plan): ask again later, never guess a plan
            self._cache.pop(key, None)
            raise VendorUnavailable(f"{channel} lookup of {change.channel_subscription_id} gave no plan")
        source = found[0]
        update = {
            f: getattr(source, f)
            for f in FILLED
            if getattr(change, f) is None and getattr(source, f) is not None
        }
        if change.customer.email is None and source.customer.email is not None:
            update["customer"] = change.customer.model_copy(update={"email": source.customer.email})
        if change.account.channel_account_id is None and source.account.channel_account_id is not None:
            update["account"] = source.account
        return change.model_copy(update=update)

    async def aclose(self) -> None:
        """Close the clients."""
        for client in (self.gcp, self.aws, self.shopify):
            if client is not None:
                await client.aclose()
