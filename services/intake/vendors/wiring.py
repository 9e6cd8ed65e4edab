"""Vendor clients built from settings: lookups for the handlers, fulfilment clients for the delivery task."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from services.intake.domain.fulfilment import FulfilmentOptions
from services.intake.vendors.clients import (
    AwsMarketplace,
    AzureFulfillment,
    FulfilmentClient,
    GcpProcurement,
    ShopifyAdmin,
    StackitVendor,
)
from services.intake.vendors.lookups import VendorLookups
from services.intake.vendors.sigv4 import AwsCredentials
from shared.catalog import Catalog
from shared.settings import Settings


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def aws_credentials(settings: Settings) -> AwsCredentials | None:
    """The SigV4 credentials when both key id and secret are set."""
    secret = _secret(settings.aws_secret_access_key)
    if not settings.aws_access_key_id or not secret:
        return None
    return AwsCredentials(settings.aws_access_key_id, secret, _secret(settings.aws_session_token))


def _aws(settings: Settings) -> AwsMarketplace:
    assert settings.aws_marketplace_base_url
    return AwsMarketplace(
        settings.aws_marketplace_base_url,
        _secret(settings.aws_marketplace_token),
        credentials=aws_credentials(settings),
        region=settings.aws_region,
        timeout=settings.vendor_timeout_seconds,
        backoff=settings.vendor_backoff_seconds,
    )


@dataclass
class VendorSet:
    """The configured vendor clients (a channel is absent when its base URL is unset)."""

    lookups: VendorLookups | None = None
    fulfilment: dict[str, FulfilmentClient] = field(default_factory=dict)
    options: FulfilmentOptions = field(default_factory=FulfilmentOptions)
    # confirms Azure webhooks by `get operation` (setting azure_webhook_check get_operation or both)
    azure_operations: AzureFulfillment | None = None


def vendor_set(settings: Settings, *, catalog: Catalog | None = None) -> VendorSet:
    """Clients for every vendor whose base URL (and id) is set."""
    t, b = settings.vendor_timeout_seconds, settings.vendor_backoff_seconds
    fulfilment: dict[str, FulfilmentClient] = {}
    gcp = aws = shopify = None
    if settings.gcp_procurement_base_url and settings.gcp_provider_id:
        gcp = GcpProcurement(
            settings.gcp_procurement_base_url,
            _secret(settings.gcp_procurement_token),
            settings.gcp_provider_id,
            timeout=t,
            backoff=b,
        )
        fulfilment["gcp_marketplace"] = GcpProcurement(
            settings.gcp_procurement_base_url,
            _secret(settings.gcp_procurement_token),
            settings.gcp_provider_id,
            timeout=t,
            backoff=b,
        )
    if settings.aws_marketplace_base_url:
        aws = _aws(settings)
        fulfilment["aws_marketplace"] = _aws(settings)
    if settings.shopify_admin_base_url:
        shopify = ShopifyAdmin(
            settings.shopify_admin_base_url,
            _secret(settings.shopify_admin_token),
            timeout=t,
            backoff=b,
        )
    if settings.azure_fulfillment_base_url:
        fulfilment["azure_marketplace"] = AzureFulfillment(
            settings.azure_fulfillment_base_url,
            _secret(settings.azure_fulfillment_token),
            timeout=t,
            backoff=b,
        )
    if settings.stackit_fulfilment and settings.stackit_base_url and settings.stackit_project_id:
        fulfilment["stackit_marketplace"] = StackitVendor(
            settings.stackit_base_url,
            settings.stackit_token,
            settings.stackit_project_id,
            timeout=t,
            backoff=b,
        )
    azure_operations = None
    if settings.azure_webhook_check in ("get_operation", "both"):
        if not settings.azure_fulfillment_base_url:
            raise ValueError("azure_webhook_check needs azure_fulfillment_base_url for `get operation`")
        azure_operations = AzureFulfillment(
            settings.azure_fulfillment_base_url,
            _secret(settings.azure_fulfillment_token),
            timeout=t,
            backoff=b,
        )
    lookups = (
        VendorLookups(gcp=gcp, aws=aws, shopify=shopify, catalog=catalog) if gcp or aws or shopify else None
    )
    options = FulfilmentOptions(
        azure_patch_deadline_seconds=settings.azure_patch_deadline_seconds,
        aws_metered_dimensions=dict(settings.aws_metered_dimensions),
    )
    return VendorSet(
        lookups=lookups, fulfilment=fulfilment, options=options, azure_operations=azure_operations
    )
