"""Property tests: whatever arrives, normalizing yields a payload, a rejection or a dead-letter.

Starting from every sample, fields are deleted, replaced by random JSON and retyped
(numbers as strings, strings as numbers, objects as lists ...), transports are mangled,
and random bytes are thrown at every channel. The only outcomes allowed are a
:class:`NormalizedPayload` whose changes keep the canonical spelling rules,
:class:`InvalidOrder` with reasons, or :class:`UnparseableInput` with a code.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from intake_samples import Sample, all_samples

from services.intake.domain.errors import InvalidOrder, UnparseableInput
from services.intake.domain.normalizers import normalize
from shared.contracts.canonical import CHANNELS, NormalizedPayload, RejectionReason

SAMPLES = all_samples()
BY_CHANNEL: dict[str, list[Sample]] = {c: [s for s in SAMPLES if s.channel == c] for c in CHANNELS}

RAW = "@@raw-number@@"  # a JSON number literal json.dumps cannot produce (spliced in by to_body)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AMOUNT = re.compile(r"^-?\d+(\.\d+)?$")
DURATION = re.compile(r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            " ",
            "true",
            "false",
            "12",
            "-1",
            "1e400",
            "NaN",
            "2025-13-45T99:99:99Z",
            "2025-01-01T00:00:00",
            "P1M",
            "usd",
            "x" * 300,
            "\u0000",
            "9" * 400,
            "\u00b2",  # "²".isdigit() is True, int("²") raises
            "\u0663",  # Arabic-Indic three
            "P99999999999999999999M",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00-01:00",
        ]
    )
    | st.sampled_from(
        [
            "1e999999999",
            "-1e-999999999",
            "1E+50",
            "1e400",
            "123456789012345678901234567890.5",
            "0.30000000000000004",
            "4" * 45,
            "-0",
            "1.0",
        ]
    ).map(lambda literal: f"{RAW}{literal}{RAW}")
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def check_outcome(channel: str, body: bytes, transport: Any) -> None:
    """The property: one of the three allowed outcomes, and canonical spelling in the first."""
    try:
        result = normalize(channel, body, transport)
    except InvalidOrder as exc:
        assert exc.reasons and all(isinstance(r, RejectionReason) for r in exc.reasons)
        return
    except UnparseableInput as exc:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", exc.reason_code)
        return
    assert isinstance(result, NormalizedPayload)
    assert result.channel == channel
    if result.disposition != "apply":
        assert result.drop_reason and not result.changes
    for change in result.changes:
        assert change.channel == channel
        assert change.channel_subscription_id
        if change.effective_at is not None:
            assert TIMESTAMP.match(change.effective_at), change.effective_at
        if change.currency is not None:
            assert re.fullmatch(r"[A-Z]{3}", change.currency)
        if change.billing_interval is not None:
            assert DURATION.match(change.billing_interval), change.billing_interval
        for amount in (change.unit_amount, change.amount):
            if amount is not None:
                assert AMOUNT.match(amount), amount
        if change.quantity is not None:
            assert change.quantity >= 0


# -- mutation machinery ------------------------------------------------------------------------


def to_body(doc: Any) -> bytes:
    """JSON bytes of ``doc`` with raw number literals (``1e999999999``) spliced in."""
    text = json.dumps(doc)
    return re.sub(f'"{RAW}(.*?){RAW}"', r"\1", text).encode()


def _explode(doc: Any) -> tuple[Any, set[str]]:
    """Top-level string fields holding JSON objects (SNS ``Message``) as objects, to mutate inside."""
    exploded: set[str] = set()
    if isinstance(doc, dict):
        for key, value in list(doc.items()):
            if isinstance(value, str) and value.startswith("{"):
                try:
                    doc[key] = json.loads(value)
                    exploded.add(key)
                except ValueError:
                    pass
    return doc, exploded


def _implode(doc: Any, exploded: set[str]) -> Any:
    if isinstance(doc, dict):
        for key in exploded:
            if isinstance(doc.get(key), dict | list):
                doc[key] = json.dumps(doc[key])
    return doc


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _retype(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if re.fullmatch(r"\s*[0-9]{1,17}\s*", value) else [value]
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return 0


@st.composite
def mutated(draw: st.DrawFn, samples: list[Sample]) -> tuple[str, bytes, Any]:
    """A sample with up to four random mutations of its body (and sometimes its transport)."""
    sample = draw(st.sampled_from(samples))
    doc, exploded = _explode(json.loads(sample.body))
    gcp_push = sample.channel == "gcp_marketplace" and draw(st.booleans())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["delete", "replace", "retype", "null", "pad"]))
        leaf = path[-1]
        if kind == "delete":
            if isinstance(parent, dict):
                del parent[leaf]
            else:
                parent.pop(leaf)
        elif kind == "replace":
            parent[leaf] = draw(json_values)
        elif kind == "retype":
            parent[leaf] = _retype(parent[leaf])
        elif kind == "null":
            parent[leaf] = None
        elif isinstance(parent[leaf], str):
            parent[leaf] = f"  {parent[leaf]}  "
    doc = _implode(doc, exploded)
    body = to_body(doc)
    if gcp_push:  # the Pub/Sub push envelope around the mutated event
        body = json.dumps({"message": {"data": base64.b64encode(body).decode(), "messageId": "1"}}).encode()
    transport = copy.deepcopy(sample.transport)
    if transport is not None and draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(sorted(transport)))
        transport[key] = draw(json_values)
    return sample.channel, body, transport


@pytest.mark.parametrize("channel", [c for c in CHANNELS if BY_CHANNEL[c]])
@given(data=st.data())
def test_mutated_samples_never_crash(channel: str, data: st.DataObject) -> None:
    ch, body, transport = data.draw(mutated(BY_CHANNEL[channel]))
    check_outcome(ch, body, transport)


@given(channel=st.sampled_from(CHANNELS), body=st.binary(max_size=200))
def test_random_bytes_never_crash(channel: str, body: bytes) -> None:
    check_outcome(channel, body, None)


@given(channel=st.sampled_from(CHANNELS), doc=json_values, transport=st.none() | json_values)
def test_random_json_never_crashes(channel: str, doc: Any, transport: Any) -> None:
    check_outcome(channel, to_body(doc), transport)


@given(
    channel=st.sampled_from(CHANNELS),
    data=st.data(),
)
def test_sample_shaped_documents_with_random_values_never_crash(channel: str, data: st.DataObject) -> None:
    """Keep a sample's keys, draw every leaf anew: deep type confusion in the right places."""
    samples = BY_CHANNEL[channel]
    sample = data.draw(st.sampled_from(samples))

    def scramble(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scramble(v) for k, v in node.items() if data.draw(st.integers(0, 9)) > 0}
        if isinstance(node, list):
            return [scramble(v) for v in node]
        return node if data.draw(st.booleans()) else data.draw(json_scalars)

    doc, exploded = _explode(json.loads(sample.body))
    body = to_body(_implode(scramble(doc), exploded))
    check_outcome(channel, body, sample.transport)


def test_floats_never_become_amounts_through_binary_floating_point() -> None:
    """0.1 + 0.2 style drift is impossible: JSON numbers are parsed as Decimal."""
    sample = next(s for s in SAMPLES if s.name == "cleverbridge/02-renew")
    doc = json.loads(sample.body, parse_float=Decimal)
    doc["customerRenewalPrice"]["netPrice"] = Decimal("0.30000000000000004")
    doc["subscriptionItems"][0]["quantity"] = 1
    body = json.dumps(doc, default=str).replace('"0.30000000000000004"', "0.30000000000000004").encode()
    (change,) = normalize("cleverbridge", body).changes
    assert change.amount == "0.30000000000000004"  # kept exactly, not rounded, not float-mangled
