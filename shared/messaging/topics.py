"""Every topic name, and the one naming rule for retry topics and dead-letter queues.

Main topics are ``<domain>.<stream>``; a service's consumer group is ``<namespace>som.<service>`` and
its retry topics are read by the group ``G.retry``. For a consumer group ``G`` reading topic ``T``:
- retry topic: ``T.retry.G``  (holds failed and parked messages of G only, same key)
- dead letters: ``T.dlq.G``
The group is in the name so that a retry or a dead letter never reaches other groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.contracts.canonical import CHANNELS

INBOUND_PREFIX = "orders.inbound."
ORDERS_REJECTED = "orders.rejected"
SUBSCRIPTIONS_COMMANDS = "subscriptions.commands"
SUBSCRIPTIONS_EVENTS = "subscriptions.events"
SUBSCRIPTIONS_COMMAND_REJECTIONS = "subscriptions.command-rejections"
BILLING_INVOICES = "billing.invoices"
ENTITLEMENTS_CHANGED = "entitlements.changed"
ENTITLEMENTS_CUSTOMERS = "entitlements.customers"  # per-customer merged sets, keyed by customer
ENTITLEMENTS_COMMANDS = "entitlements.commands"  # grants, snapshot requests, reconcile, timers
ENTITLEMENTS_APPLIED = "entitlements.applied"  # provisioning's acknowledgements, keyed by subscription
ENTITLEMENTS_VIOLATION = "entitlements.violation"  # more in use than allowed
ENTITLEMENTS_INSTRUCTIONS = "entitlements.instructions"  # block new instances, data cleanup
ENTITLEMENTS_USAGE = "entitlements.usage"  # 80 % / 100 % of a counted limit reached, once per period
USAGE_REPORTED = "usage.reported"  # usage of metered features, keyed by customer
PAYMENTS_REQUESTS = "payments.requests"
PAYMENTS_RESULTS = "payments.results"
ACCOUNTING_JOURNAL = "accounting.journal"
NOTIFICATIONS = "notifications.customer"
PROVISIONING_INSTANCES = "provisioning.instances"
CHANNELS_DEADLINE_MISSED = "channels.deadline_missed"
ORDERS_REPLENISHMENT = "orders.replenishment"  # one order per replenishment cycle, keyed by subscription
REPLENISHMENT_COMMANDS = "replenishment.commands"  # run_cycle timers, skip/delay, keyed by subscription
PRICING_UPDATED = "pricing.updated"  # SKU price list entries, keyed by SKU

RETRY_MARK = ".retry."
DLQ_MARK = ".dlq."


def inbound(channel: str) -> str:
    """Inbound topic of a sales channel: ``orders.inbound.<channel>``."""
    return f"{INBOUND_PREFIX}{channel}"


def consumer_group(namespace: str, service: str) -> str:
    """Consumer group of a service's main topics, inside ``namespace``."""
    return f"{namespace}som.{service}"


def retry_group(group: str) -> str:
    """Consumer group that reads ``group``'s retry topics (retries wait, so they get their own)."""
    return f"{group}.retry"


def retry_topic(topic: str, group: str) -> str:
    """Retry topic of ``group`` for ``topic``."""
    return f"{topic}{RETRY_MARK}{group}"


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of ``group`` for ``topic``."""
    return f"{topic}{DLQ_MARK}{group}"


def is_dlq(topic: str) -> bool:
    """True for a dead-letter topic name."""
    return DLQ_MARK in topic


def namespaced(namespace: str, topic: str) -> str:
    """Topic name inside a namespace (tests and tenants get their own)."""
    return f"{namespace}{topic}"


@dataclass(frozen=True)
class TopicSpec:
    """A topic and its partition count. Subscription topics are keyed by subscription id."""

    name: str
    partitions: int


def main_topics(default_partitions: int) -> list[TopicSpec]:
    """All main topics of the system with their partition counts."""
    names = [inbound(c) for c in CHANNELS] + [
        ORDERS_REJECTED,
        SUBSCRIPTIONS_COMMANDS,
        SUBSCRIPTIONS_EVENTS,
        SUBSCRIPTIONS_COMMAND_REJECTIONS,
        BILLING_INVOICES,
        ENTITLEMENTS_CHANGED,
        ENTITLEMENTS_CUSTOMERS,
        ENTITLEMENTS_COMMANDS,
        ENTITLEMENTS_APPLIED,
        ENTITLEMENTS_VIOLATION,
        ENTITLEMENTS_INSTRUCTIONS,
        ENTITLEMENTS_USAGE,
        USAGE_REPORTED,
        PAYMENTS_REQUESTS,
        PAYMENTS_RESULTS,
        ACCOUNTING_JOURNAL,
        NOTIFICATIONS,
        PROVISIONING_INSTANCES,
        CHANNELS_DEADLINE_MISSED,
        ORDERS_REPLENISHMENT,
        REPLENISHMENT_COMMANDS,
        PRICING_UPDATED,
    ]
    return [TopicSpec(n, default_partitions) for n in names]


# Who consumes what, by consumer group name: filled by ``services/registry.py`` from the service specs
# when it is imported; kept for readers that take no table of their own (``shared.timekeeping``).
CONSUMERS: dict[str, tuple[str, ...]] = {}


def all_topics(
    namespace: str,
    default_partitions: int,
    group_of: Callable[[str], str],
    consumers: Mapping[str, Sequence[str]] | None = None,
) -> list[TopicSpec]:
    """Main topics plus each consumer group's retry and dead-letter topics, inside ``namespace``.

    ``consumers`` maps a consumer (service) name to its logical topics; default: :data:`CONSUMERS`,
    which must have been filled (import ``services.registry``) or the retry topics would be missing.
    """
    table = CONSUMERS if consumers is None else consumers
    if not table:
        raise RuntimeError("no consumers declared: pass them, or import services.registry first")
    specs = [TopicSpec(namespaced(namespace, t.name), t.partitions) for t in main_topics(default_partitions)]
    for service, names in table.items():
        group = group_of(service)
        for t in names:
            main = namespaced(namespace, t)
            specs.append(TopicSpec(retry_topic(main, group), default_partitions))
            specs.append(TopicSpec(dlq_topic(main, group), 1))
    return specs
