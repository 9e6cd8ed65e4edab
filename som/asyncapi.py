"""The AsyncAPI 3.0.0 document of every topic the workers read or write, generated into
``schemas/asyncapi.yaml`` by ``som asyncapi`` (a test fails when it drifts).

Channels, who sends and who receives come from the service specs (``services/registry.py``) and the
naming rules of ``shared/messaging/topics.py``; payload schemas come from the pydantic contracts (the
same ones ``schemas/*.json`` publish). FastStream could describe its subscribers, but each worker
has one batch subscriber over all its topics, which says nothing about payloads: this document is
built from the declarations instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.registry import SPECS
from shared.contracts import canonical, envelope
from shared.contracts import events as ev
from shared.messaging import incoming as runtime_headers
from shared.messaging import topics
from shared.settings import Settings

OUTPUT = Path(__file__).resolve().parents[1] / "schemas" / "asyncapi.yaml"
VERSION = "0.1.0"
KAFKA_BINDING = "0.5.0"
PARTITIONS = 6
_REF = "#/components/schemas/{model}"


# Event type -> payload contract of every CloudEvent the system publishes.
CLOUD_EVENTS: dict[str, type[BaseModel]] = {
    ev.ORDER_REJECTED: ev.OrderRejected,
    ev.SUBSCRIPTION_COMMAND: ev.SubscriptionCommand,
    ev.SUBSCRIPTION_COMMAND_REJECTED: ev.SubscriptionCommandRejected,
    ev.SUBSCRIPTION_STATE_CHANGED: ev.SubscriptionStateChanged,
    "som.subscription.data_cleanup_due": ev.SubscriptionNotice,
    ev.INVOICE_ISSUED: ev.InvoiceIssued,
    ev.CREDIT_NOTE_ISSUED: ev.InvoiceIssued,
    ev.ENTITLEMENTS_CHANGED: ev.EntitlementsChanged,
    ev.PAYMENT_REQUESTED: ev.PaymentRequested,
    ev.PAYMENT_RESULT: ev.PaymentResult,
    ev.PAYMENT_METHOD_UPDATED: ev.PaymentMethodUpdated,
    ev.JOURNAL_ENTRY_POSTED: ev.JournalEntryPosted,
    ev.UPCOMING_CHARGE_NOTICE: ev.SubscriptionNotice,
    "som.provisioning.instance_reported": ev.InstanceReported,
    ev.VENDOR_DEADLINE_MISSED: ev.VendorDeadlineMissed,
    ev.CUSTOMER_ENTITLEMENTS_CHANGED: ev.CustomerEntitlementsChanged,
    ev.CUSTOMER_ENTITLEMENTS_SNAPSHOT: ev.CustomerEntitlementsChanged,
    ev.ENTITLEMENTS_COMMAND: ev.EntitlementCommand,
    ev.ENTITLEMENTS_APPLIED: ev.EntitlementsApplied,
    ev.ENTITLEMENTS_VIOLATION: ev.EntitlementViolation,
    ev.ENTITLEMENTS_INSTRUCTION: ev.EntitlementInstruction,
    ev.USAGE_REPORTED: ev.UsageReported,
    ev.USAGE_THRESHOLD_REACHED: ev.UsageThresholdReached,
    ev.REPLENISHMENT_ORDER_CREATED: ev.ReplenishmentOrder,
    ev.REPLENISHMENT_CYCLE_DELAYED: ev.ReplenishmentCycleDelayed,
    ev.REPLENISHMENT_COMMAND: ev.ReplenishmentCommand,
    ev.PRICING_UPDATED: ev.PricingUpdated,
}

# Provisioning publishes these; the lifecycle reads only the data, whatever the type says.
EXTERNAL_TYPES = frozenset({"som.provisioning.instance_reported"})

# Main topic -> (event types on it, what its key is).
SUBSCRIPTION_KEY = "the subscription id (per-subscription order)"
CUSTOMER_KEY = "the customer id (per-customer order)"
TOPIC_MESSAGES: dict[str, tuple[tuple[str, ...], str]] = {
    topics.ORDERS_REJECTED: ((ev.ORDER_REJECTED,), "the channel's subscription id, else the channel name"),
    topics.SUBSCRIPTIONS_COMMANDS: ((ev.SUBSCRIPTION_COMMAND,), SUBSCRIPTION_KEY),
    topics.SUBSCRIPTIONS_EVENTS: (
        (ev.SUBSCRIPTION_STATE_CHANGED, "som.subscription.data_cleanup_due"),
        SUBSCRIPTION_KEY,
    ),
    topics.SUBSCRIPTIONS_COMMAND_REJECTIONS: ((ev.SUBSCRIPTION_COMMAND_REJECTED,), SUBSCRIPTION_KEY),
    topics.BILLING_INVOICES: ((ev.INVOICE_ISSUED, ev.CREDIT_NOTE_ISSUED), SUBSCRIPTION_KEY),
    topics.ENTITLEMENTS_CHANGED: ((ev.ENTITLEMENTS_CHANGED,), SUBSCRIPTION_KEY),
    topics.PAYMENTS_REQUESTS: ((ev.PAYMENT_REQUESTED,), SUBSCRIPTION_KEY),
    topics.PAYMENTS_RESULTS: ((ev.PAYMENT_RESULT, ev.PAYMENT_METHOD_UPDATED), SUBSCRIPTION_KEY),
    topics.ACCOUNTING_JOURNAL: ((ev.JOURNAL_ENTRY_POSTED,), SUBSCRIPTION_KEY),
    topics.NOTIFICATIONS: ((ev.UPCOMING_CHARGE_NOTICE,), SUBSCRIPTION_KEY),
    topics.PROVISIONING_INSTANCES: (("som.provisioning.instance_reported",), SUBSCRIPTION_KEY),
    topics.CHANNELS_DEADLINE_MISSED: ((ev.VENDOR_DEADLINE_MISSED,), SUBSCRIPTION_KEY),
    topics.ENTITLEMENTS_CUSTOMERS: (
        (ev.CUSTOMER_ENTITLEMENTS_CHANGED, ev.CUSTOMER_ENTITLEMENTS_SNAPSHOT),
        CUSTOMER_KEY,
    ),
    topics.ENTITLEMENTS_COMMANDS: ((ev.ENTITLEMENTS_COMMAND,), CUSTOMER_KEY),
    topics.ENTITLEMENTS_APPLIED: ((ev.ENTITLEMENTS_APPLIED,), SUBSCRIPTION_KEY),
    topics.ENTITLEMENTS_VIOLATION: ((ev.ENTITLEMENTS_VIOLATION,), SUBSCRIPTION_KEY),
    topics.ENTITLEMENTS_INSTRUCTIONS: ((ev.ENTITLEMENTS_INSTRUCTION,), SUBSCRIPTION_KEY),
    topics.ENTITLEMENTS_USAGE: ((ev.USAGE_THRESHOLD_REACHED,), CUSTOMER_KEY),
    topics.USAGE_REPORTED: ((ev.USAGE_REPORTED,), CUSTOMER_KEY),
    topics.ORDERS_REPLENISHMENT: (
        (ev.REPLENISHMENT_ORDER_CREATED, ev.REPLENISHMENT_CYCLE_DELAYED),
        SUBSCRIPTION_KEY,
    ),
    topics.REPLENISHMENT_COMMANDS: ((ev.REPLENISHMENT_COMMAND,), SUBSCRIPTION_KEY),
    topics.PRICING_UPDATED: ((ev.PRICING_UPDATED,), "the SKU (per-SKU order)"),
}

RULES = f"""\
Every subscription topic is keyed by subscription id, so one subscription's messages stay in order.
Our own events are CloudEvents 1.0 in structured JSON mode (record content type
`application/cloudevents+json`, `datacontenttype` `application/json`), with the extensions
`correlationid` and `causationid`; the Kafka headers `ce_id` and `ce_type` repeat the id and type,
and `traceparent`/`tracestate` carry the W3C trace context. Amounts are decimal strings beside their
ISO 4217 currency, never floats.

Retry and dead-letter topics follow one naming rule, per consumer group `G` (`som.<worker>`) and
consumed topic `T`: retry topic `T{topics.RETRY_MARK}G`, dead-letter topic `T{topics.DLQ_MARK}G`.
They hold only that group's messages, with the original key, value and headers plus the `x-*`
headers of the RetryHeaders and DeadLetterHeaders schemas. A consumer outside this system reads the
main topics only. A deployment with a topic namespace prefixes every topic and group name with it.
"""


def _group(service: str) -> str:
    return Settings(topic_namespace="").group(service)


def _asyncapi_discriminators(node: Any) -> Any:
    """Pydantic writes OpenAPI's ``discriminator: {propertyName, mapping}``; an AsyncAPI 3.0 Schema
    Object takes the property name as a string (the official 3.0.0 JSON Schema refuses the object)."""
    if isinstance(node, list):
        return [_asyncapi_discriminators(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _asyncapi_discriminators(v) for k, v in node.items()}
    found = node.get("discriminator")
    if isinstance(found, dict) and "propertyName" in found:
        out["discriminator"] = found["propertyName"]
    return out


def _schemas() -> dict[str, Any]:
    unique: set[type[BaseModel]] = {*CLOUD_EVENTS.values(), envelope.CloudEvent, canonical.DirectOrder}
    models = sorted(unique, key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    out: dict[str, Any] = dict(sorted(_asyncapi_discriminators(top.get("$defs", {})).items()))
    out["CloudEventHeaders"] = {
        "type": "object",
        "description": "Kafka headers of every CloudEvent record (string values).",
        "properties": {
            "content-type": {"type": "string", "const": "application/cloudevents+json"},
            "ce_id": {"type": "string", "description": "the CloudEvent id (also the consumers' inbox key)"},
            "ce_type": {"type": "string", "description": "the CloudEvent type"},
            "traceparent": {"type": "string", "description": "W3C trace context"},
            "tracestate": {"type": "string"},
        },
        "required": ["content-type", "ce_id", "ce_type"],
    }
    out["InboundHeaders"] = {
        "type": "object",
        "description": "Kafka headers of a channel payload: what the channel sent outside the body.",
        "patternProperties": {
            "^http\\..+$": {
                "type": "string",
                "description": "an HTTP header of the webhook, http.<Header-Name>",
            },
            "^poll\\..+$": {"type": "string", "description": "context of a polled record, poll.<key>"},
        },
        "properties": {
            "som-test-clock": {"type": "string", "description": "run the order on this test clock"}
        },
    }
    retry = {
        runtime_headers.H_ATTEMPT: "attempt number of the next try (1-based)",
        runtime_headers.H_NOT_BEFORE: "RFC 3339 time before which the retry consumer does not try",
        runtime_headers.H_PARKED: "present when the record only follows a parked key",
        runtime_headers.H_ORIG_TOPIC: "topic the record was first consumed from",
        runtime_headers.H_ORIG_PARTITION: "its partition",
        runtime_headers.H_ORIG_OFFSET: "its offset",
        runtime_headers.H_ORIG_TIMESTAMP: "its timestamp (ms)",
        runtime_headers.H_GROUP: "consumer group that failed it",
        runtime_headers.H_EXC_TYPE: "exception type of the last failure",
        runtime_headers.H_EXC_MESSAGE: "exception message of the last failure",
        runtime_headers.H_FIRST_FAILURE: "RFC 3339 time of the first failure",
        runtime_headers.H_LAST_FAILURE: "RFC 3339 time of the last failure",
    }
    out["RetryHeaders"] = {
        "type": "object",
        "description": "Headers the runtime adds on a retry topic (beside the original ones).",
        "properties": {k: {"type": "string", "description": v} for k, v in retry.items()},
    }
    out["DeadLetterHeaders"] = {
        "type": "object",
        "description": "Headers on a dead-letter topic (beside the original ones).",
        "properties": {
            **{k: {"type": "string", "description": v} for k, v in retry.items()},
            runtime_headers.H_DLQ_REASON: {"type": "string", "enum": ["permanent", "retries_exhausted"]},
        },
        "required": [runtime_headers.H_ORIG_TOPIC, runtime_headers.H_GROUP, runtime_headers.H_DLQ_REASON],
    }
    out["ChannelPayload"] = {
        "type": "object",
        "description": "A sales channel's own notification body, as the channel sends it (docs/intake.md).",
        "additionalProperties": True,
    }
    return out


def _message_name(event_type: str) -> str:
    return "".join(p.capitalize() for p in event_type.removeprefix("som.").replace(".", "_").split("_"))


def _key_binding(description: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": KAFKA_BINDING}}


def _message_keys() -> dict[str, str]:
    """Message name -> what the record key is (one meaning per message)."""
    keys: dict[str, str] = {}
    for types, key in TOPIC_MESSAGES.values():
        for t in types:
            keys[_message_name(t)] = key
    return keys


def _messages() -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = _message_keys()
    for event_type, model in CLOUD_EVENTS.items():
        external = event_type in EXTERNAL_TYPES
        type_schema = (
            {"type": "string", "description": "chosen by the producer outside this system; not checked"}
            if external
            else {"const": event_type}
        )
        out[_message_name(event_type)] = {
            "name": event_type,
            "title": _message_name(event_type),
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": type_schema,
                            "dataschema": {"const": envelope.schema_uri(model)},
                            "data": {"$ref": _REF.format(model=model.__name__)},
                        },
                    },
                ]
            },
            "correlationId": {"location": "$message.payload#/correlationid"},
            "bindings": _key_binding(keys[_message_name(event_type)]),
        }
    out["DirectOrder"] = {
        "name": "DirectOrder",
        "title": "Direct order",
        "summary": "The project's own order format on orders.inbound.direct (key: the order id).",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/InboundHeaders"},
        "payload": {"$ref": "#/components/schemas/DirectOrder"},
        "bindings": _key_binding("the order id"),
    }
    out["ChannelPayload"] = {
        "name": "ChannelPayload",
        "title": "Channel payload",
        "summary": "A marketplace or shop notification, as sent (normalized by intake).",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/InboundHeaders"},
        "payload": {"$ref": "#/components/schemas/ChannelPayload"},
        "bindings": _key_binding("the channel's subscription or order id"),
    }
    return out


def _topic_messages(topic: str) -> tuple[list[str], str]:
    """Message names on a main topic, and what its key is."""
    if topic.startswith(topics.INBOUND_PREFIX):
        name = "DirectOrder" if topic == topics.inbound("direct") else "ChannelPayload"
        return [name], "the order id (direct) or the channel's subscription or order id"
    if topic not in TOPIC_MESSAGES:
        raise KeyError(
            f"topic {topic} has no entry in som/asyncapi.py TOPIC_MESSAGES: add its event types and key"
        )
    types, key = TOPIC_MESSAGES[topic]
    return [_message_name(t) for t in types], key


def channel_id(topic: str) -> str:
    """Channel id of a topic in the document (ids allow letters, digits, '-' and '_' only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", topic)


def _channel(address: str, names: list[str], key: str, description: str, partitions: int) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        "bindings": {
            "kafka": {"topic": address, "partitions": partitions, "bindingVersion": KAFKA_BINDING},
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI document as a dict."""
    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for spec in SPECS:
        for t in spec.produces:
            producers.setdefault(t, []).append(spec.name)
        for t in spec.consumes:
            consumers.setdefault(t, []).append(spec.name)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for main in topics.main_topics(PARTITIONS):
        names, key = _topic_messages(main.name)
        who = []
        if main.name in producers:
            who.append("written by " + ", ".join(producers[main.name]))
        if main.name in consumers:
            who.append("read by " + ", ".join(consumers[main.name]))
        desc = (
            f"Key: {key}. "
            + ("; ".join(who).capitalize() if who else "Written and read outside the worker set")
            + "."
        )
        channels[channel_id(main.name)] = _channel(main.name, names, key, desc, main.partitions)
        for service in consumers.get(main.name, []):
            group = _group(service)
            retry, dlq = topics.retry_topic(main.name, group), topics.dlq_topic(main.name, group)
            channels[channel_id(retry)] = _channel(
                retry,
                names,
                key,
                f"Retry topic of {group} for {main.name} (headers: RetryHeaders).",
                PARTITIONS,
            )
            channels[channel_id(dlq)] = _channel(
                dlq, names, key, f"Dead letters of {group} for {main.name} (headers: DeadLetterHeaders).", 1
            )
            for action, target, what in (
                ("receive", main.name, "consumes"),
                ("send", retry, "retries failed and parked messages of"),
                ("receive", retry, "retries from"),
                ("send", dlq, "dead-letters messages of"),
            ):
                op_id = channel_id(f"{service}.{action}.{target}")
                operations[op_id] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id(target)}"},
                    "summary": f"{service} {what} {main.name}",
                    "messages": [{"$ref": f"#/channels/{channel_id(target)}/messages/{n}"} for n in names],
                    "bindings": {
                        "kafka": {
                            "groupId": {
                                "type": "string",
                                "enum": [
                                    group
                                    if target == main.name or action == "send"
                                    else topics.retry_group(group)
                                ],
                            },
                            "bindingVersion": KAFKA_BINDING,
                        }
                    },
                }
        for service in producers.get(main.name, []):
            operations[channel_id(f"{service}.send.{main.name}")] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_id(main.name)}"},
                "summary": f"{service} publishes to {main.name} (through its outbox)",
                "messages": [{"$ref": f"#/channels/{channel_id(main.name)}/messages/{n}"} for n in names],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Subscription order management events",
            "version": VERSION,
            "description": RULES,
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "kafka": {
                "host": "localhost:29092",
                "protocol": "kafka",
                "description": "The compose stack's broker (SOM_KAFKA_BOOTSTRAP elsewhere).",
            }
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": _schemas(), "messages": _messages()},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the rules read as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    """The document as YAML text."""
    header = "# GENERATED by `som asyncapi` from the service specs and shared/contracts: do not edit.\n"
    return header + yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write(path: Path = OUTPUT) -> Path:
    """Write the document; returns its path."""
    path.write_text(render())
    return path


def drifted(path: Path = OUTPUT) -> bool:
    """True when the file is missing or differs from what the code generates."""
    return not path.exists() or path.read_text() != render()
