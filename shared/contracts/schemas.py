"""JSON Schemas of the public contracts, generated into ``schemas/`` (a test fails when they drift)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from shared.contracts import canonical, envelope, events

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def contracts() -> list[type[BaseModel]]:
    """Every model whose schema is published."""
    models: list[type[BaseModel]] = [
        envelope.CloudEvent,
        events.SubscriptionCommand,
        events.SubscriptionStateChanged,
        events.SubscriptionCommandRejected,
        events.OrderRejected,
        events.InvoiceIssued,
        events.EntitlementsChanged,
        events.SubscriptionNotice,
        events.InstanceReported,
        canonical.CanonicalOrderChange,
    ]
    for extra in ("DirectOrder",):
        model = getattr(canonical, extra, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            models.append(model)
    for name in (
        "PaymentRequested",
        "PaymentResult",
        "PaymentMethodUpdated",
        "JournalEntryPosted",
        "UpcomingChargeNotice",
        "VendorDeadlineMissed",
        "CustomerEntitlementsChanged",
        "EntitlementCommand",
        "EntitlementsApplied",
        "EntitlementViolation",
        "EntitlementInstruction",
        "UsageReported",
        "UsageThresholdReached",
        "ReplenishmentOrder",
        "ReplenishmentCycleDelayed",
        "ReplenishmentCommand",
        "PricingUpdated",
    ):
        model = getattr(events, name, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            models.append(model)
    return models


def render() -> dict[str, str]:
    """File name -> JSON text of every schema."""
    out: dict[str, str] = {}
    for model in contracts():
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = envelope.schema_uri(model)
        out[f"{model.__name__}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Regenerate ``schemas/``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for stale in directory.glob("*.json"):
        if stale.name not in rendered:
            stale.unlink()
    for name, text in rendered.items():
        (directory / name).write_text(text)
    return sorted(rendered)


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files that differ from what the contracts generate (missing, stale or changed)."""
    rendered = render()
    present = {p.name for p in directory.glob("*.json")}
    changed = [n for n, t in rendered.items() if n not in present or (directory / n).read_text() != t]
    return sorted(changed + [n for n in present if n not in rendered])
