"""Gapless document numbers when billing takes an invoice number ahead of the invoice.

An activation or a renewal takes its number in the round trip that loads the subscription
(``load_for_change(reserve=...)``); when no invoice comes of it (a stale redelivery, a free
start), the number is given back in the same transaction and the series stays gapless.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.billing import store
from shared.db.uow import Database, UnitOfWork

pytestmark = pytest.mark.integration


class _RolledBack(Exception):
    pass


def _change() -> Any:
    return cast(Any, SimpleNamespace(subscription_id=f"sub-{uuid.uuid4().hex[:8]}", snapshot=None))


async def test_a_reserved_number_given_back_is_the_next_one_issued(db: Database) -> None:
    with pytest.raises(_RolledBack):
        async with db.pool.acquire() as conn, conn.transaction():
            first = await store.next_document_number(conn, "invoice")
            rec, credit, reserved = await store.load_for_change(
                conn, _change(), f"cus-{uuid.uuid4().hex[:8]}", "EUR", reserve="invoice"
            )
            assert rec is None and credit == 0
            assert reserved is not None and reserved.startswith("INV-")
            assert int(reserved[4:]) == int(first[4:]) + 1
            # As a handler does it: a queued write, run with the handler's other writes.
            uow = UnitOfWork(conn, "billing", "")
            try:
                await store.release_document_number(conn, reserved)
                assert uow.writes, "the release is queued with the handler's writes"
                await uow.flush_writes()
            finally:
                uow.close()
            assert await store.next_document_number(conn, "invoice") == reserved
            raise _RolledBack  # leave the shared series as it was


async def test_no_number_is_taken_without_a_reservation(db: Database) -> None:
    with pytest.raises(_RolledBack):
        async with db.pool.acquire() as conn, conn.transaction():
            first = await store.next_document_number(conn, "invoice")
            _, _, reserved = await store.load_for_change(conn, _change(), "cus-none", "EUR")
            assert reserved is None
            assert int((await store.next_document_number(conn, "invoice"))[4:]) == int(first[4:]) + 1
            raise _RolledBack


def test_a_record_hands_its_reserved_number_out_once_and_only_for_its_series() -> None:
    rec = store.BillingRecord(
        "sub-1", 0, cast(Any, None), None, 0, None, None, reserved_number="INV-00000007"
    )
    assert rec.take_reserved("credit_note") is None
    assert rec.take_reserved("invoice") == "INV-00000007"
    assert rec.take_reserved("invoice") is None
