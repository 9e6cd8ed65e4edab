"""Declaration of the billing worker: lifecycle changes and payment results in, its scheduler beside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from services.billing import metrics
from shared.db.uow import Database
from shared.messaging import topics
from shared.service import ServiceSpec, Wiring
from shared.settings import Settings

if TYPE_CHECKING:
    from services.billing.domain import BillingContext
    from shared.catalog import Catalog

NAME = "billing"


def billing_context(catalog: Catalog, policy_path: Path | str | None = None) -> BillingContext:
    """Catalog, billing policy and tax table as the worker (and ``som billing preview``) use them.

    ``policy_path`` (``SOM_BILLING_POLICY_PATH``) points at another ``billing_policy.yaml``.
    A customer without a country (the direct channel's orders carry only a region) is not
    taxed: the documents carry a 0 rate, and the engine notes it on every such outcome (the
    worker logs the note). An unknown country stays an error (dead letter).
    """
    from services.billing.domain import BillingContext, load_context

    ctx = load_context(catalog, policy_path=policy_path)
    tax = ctx.tax_table.model_copy(update={"missing_country": "untaxed"})
    return BillingContext(catalog=ctx.catalog, policy=ctx.policy, tax_table=tax)


def wire(settings: Settings, db: Database) -> Wiring:
    """The billing handlers and the scheduler of its timers (renewals, dunning retries)."""
    # Imported here: the registry reads every spec, a worker process builds only its own.
    from services.billing.handlers import BillingHandlers
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route
    from shared.timekeeping import run_scheduler

    ctx = billing_context(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None),
        settings.charge_policy_path,
    )
    handlers = BillingHandlers(ctx)
    routes = [
        Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event),
        Route(topics.PAYMENTS_RESULTS, handlers.on_payment_event),
        Route(topics.REPLENISHMENT_COMMANDS, handlers.replenishments.on_command),
        Route(topics.PRICING_UPDATED, handlers.replenishments.on_pricing),
    ]
    return Wiring(routes, [lambda: run_scheduler(db, NAME, poll_seconds=settings.scheduler_poll_seconds)])


SPEC = ServiceSpec(
    name=NAME,
    consumes=(
        topics.SUBSCRIPTIONS_EVENTS,
        topics.PAYMENTS_RESULTS,
        topics.REPLENISHMENT_COMMANDS,
        topics.PRICING_UPDATED,
    ),
    produces=(
        topics.BILLING_INVOICES,
        topics.PAYMENTS_REQUESTS,
        topics.ACCOUNTING_JOURNAL,
        topics.SUBSCRIPTIONS_COMMANDS,
        topics.ORDERS_REPLENISHMENT,
        topics.REPLENISHMENT_COMMANDS,  # the run_cycle timers
    ),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    background=("scheduler",),
    metrics=metrics.ALL,
)
build = SPEC.build
