"""schemas/asyncapi.yaml: generated from the service specs and contracts, never drifting, and valid AsyncAPI 3.

Full validation against the official AsyncAPI 3.0.0 JSON Schema is not possible offline (no PyPI
package ships it); the document is validated against the ``asyncapi3`` object model (pydantic models
of the 3.0 specification) and structurally here: required fields, every ``$ref`` resolves, every
topic of the system is a channel, every operation's messages belong to its channel.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import pytest
import yaml

from services.registry import SPECS, all_topics
from shared.contracts import events as ev
from shared.settings import Settings
from som import asyncapi

DOC: dict[str, Any] = yaml.safe_load(asyncapi.OUTPUT.read_text())
KEY = re.compile(r"^[A-Za-z0-9_-]+$")
COMPONENT_KEY = re.compile(r"^[A-Za-z0-9.\-_]+$")


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_the_file_matches_the_code() -> None:
    assert not asyncapi.drifted(), "run `som asyncapi` and commit schemas/asyncapi.yaml"


def test_required_asyncapi_3_fields() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    for name, server in DOC["servers"].items():
        assert KEY.match(name) and server["host"] and server["protocol"] == "kafka"
    for cid, channel in DOC["channels"].items():
        assert KEY.match(cid), cid
        assert isinstance(channel["address"], str) and channel["messages"]
    for oid, op in DOC["operations"].items():
        assert KEY.match(oid), oid
        assert op["action"] in {"send", "receive"}
        assert op["channel"]["$ref"].startswith("#/channels/")
    for section in ("schemas", "messages"):
        for key in DOC["components"][section]:
            assert COMPONENT_KEY.match(key), key


def test_every_reference_resolves() -> None:
    found = refs(DOC)
    assert len(found) > 100
    for ref in found:
        resolve(ref)  # KeyError when dangling


def test_operation_messages_belong_to_their_channel() -> None:
    for oid, op in DOC["operations"].items():
        channel_ref = op["channel"]["$ref"]
        for message in op.get("messages", []):
            assert message["$ref"].startswith(channel_ref + "/messages/"), oid


def test_every_topic_of_the_system_is_a_channel() -> None:
    settings = Settings(topic_namespace="")
    expected = {t.name for t in all_topics("", 6, settings.group)}
    assert {c["address"] for c in DOC["channels"].values()} == expected


def test_every_worker_reads_and_writes_what_its_spec_declares() -> None:
    for spec in SPECS:
        for topic in spec.consumes:
            assert asyncapi.channel_id(f"{spec.name}.receive.{topic}") in DOC["operations"]
        for topic in spec.produces:
            op = DOC["operations"][asyncapi.channel_id(f"{spec.name}.send.{topic}")]
            assert op["action"] == "send"


def test_payloads_are_the_contracts() -> None:
    schemas = DOC["components"]["schemas"]
    invoice = DOC["components"]["messages"]["BillingInvoiceIssued"]
    envelope, specific = invoice["payload"]["allOf"]
    assert envelope["$ref"] == "#/components/schemas/CloudEvent"
    assert specific["properties"]["type"] == {"const": ev.INVOICE_ISSUED}
    assert resolve(specific["properties"]["data"]["$ref"]) is schemas["InvoiceIssued"]
    # The same fields and required list as the contract's own JSON Schema.
    own = ev.InvoiceIssued.model_json_schema(mode="serialization")
    assert schemas["InvoiceIssued"]["required"] == own["required"]
    assert set(schemas["InvoiceIssued"]["properties"]) == set(own["properties"])
    assert invoice["bindings"]["kafka"]["key"]["type"] == "string"
    assert resolve(invoice["headers"]["$ref"])["required"] == ["content-type", "ce_id", "ce_type"]
    dlq = schemas["DeadLetterHeaders"]["properties"]["x-dlq-reason"]
    assert dlq["enum"] == ["permanent", "retries_exhausted"]


def test_retry_and_dlq_naming_rule_is_stated_and_followed() -> None:
    assert ".retry.G" in DOC["info"]["description"] and ".dlq.G" in DOC["info"]["description"]
    for channel in DOC["channels"].values():
        address = channel["address"]
        if ".dlq." in address:
            assert channel["bindings"]["kafka"]["partitions"] == 1
            assert re.fullmatch(r".+\.dlq\.som\.[a-z]+", address)


def test_valid_against_the_asyncapi3_object_model() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's own field-shadowing warnings
        models = pytest.importorskip("asyncapi3.models")
    parsed = models.AsyncAPI3.model_validate(DOC)
    assert len(parsed.channels) == len(DOC["channels"])
    broken = json.loads(json.dumps(DOC))
    broken["operations"][next(iter(broken["operations"]))]["action"] = "publish"  # AsyncAPI 2 wording
    with pytest.raises(ValueError):
        models.AsyncAPI3.model_validate(broken)


def test_every_event_type_of_the_contracts_is_documented() -> None:
    declared = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str) and v.startswith("som.")}
    unused = {ev.ORDER_ACCEPTED}  # declared, published by no worker
    assert declared - unused <= set(asyncapi.CLOUD_EVENTS), "add the new event type to som/asyncapi.py"
    on_topics = {t for types, _ in asyncapi.TOPIC_MESSAGES.values() for t in types}
    assert on_topics == set(asyncapi.CLOUD_EVENTS)


def _discriminators(node: Any) -> list[Any]:
    if isinstance(node, list):
        return [d for v in node for d in _discriminators(v)]
    if not isinstance(node, dict):
        return []
    # A union's discriminator sits beside its oneOf/anyOf (a property named "discriminator" would not).
    union = "oneOf" in node or "anyOf" in node
    own = [node["discriminator"]] if union and "discriminator" in node else []
    return own + [d for k, v in node.items() if k != "discriminator" for d in _discriminators(v)]


def test_schema_discriminators_are_property_names_as_asyncapi_3_requires() -> None:
    # The official AsyncAPI 3.0.0 JSON Schema types a Schema Object's discriminator as a string;
    # pydantic writes OpenAPI's {propertyName, mapping} object, which that schema refuses (checked
    # against spec-json-schemas 3.0.0 once by hand: 2 errors before the conversion, 0 after).
    found = _discriminators(DOC["components"]["schemas"])
    assert found, "the command and event unions are discriminated"
    assert all(isinstance(d, str) for d in found), found
