"""Derived event ids: the RFC 4122 version-5 UUIDs ``uuid.uuid5`` makes, built without a UUID object."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.contracts.envelope import _ID_NAMESPACE, derived_id


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_derived_id_is_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    expected = uuid.uuid5(_ID_NAMESPACE, "|".join(parts))
    got = derived_id(*parts)
    assert got == str(expected)
    assert uuid.UUID(got).version == 5


def test_derived_id_is_stable_and_tells_parts_apart() -> None:
    assert derived_id("order", "web", "1") == derived_id("order", "web", "1")
    assert derived_id("order", "web", "1") != derived_id("order", "web", "2")
