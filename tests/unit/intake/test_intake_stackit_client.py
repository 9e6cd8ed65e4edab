"""The STACKIT vendor API client of the poller, against an in-process httpx transport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.intake.stackit_poller import StackitApiError, StackitClient, correlation_key

PROJECT = "f0b4d7a2-6e31-4c89-9d5a-2a8c1e7f3b60"


def _client(handler: Any, **kwargs: Any) -> StackitClient:
    return StackitClient(
        "https://vendor.example/", "tok", PROJECT, transport=httpx.MockTransport(handler), **kwargs
    )


async def test_list_follows_the_cursor_and_sends_the_token() -> None:
    seen: list[httpx.Request] = []
    items = [{"subscriptionId": f"s-{i}"} for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        start = int(request.url.params.get("cursor", "0"))
        page: dict[str, Any] = {"items": items[start : start + 2]}
        if start + 2 < len(items):
            page["cursor"] = str(start + 2)
        return httpx.Response(200, json=page)

    client = _client(handler, page_size=2)
    try:
        listed = await client.list_subscriptions()
    finally:
        await client.aclose()
    assert [s["subscriptionId"] for s in listed] == [f"s-{i}" for i in range(5)]
    assert len(seen) == 3
    assert all(r.headers["Authorization"] == "Bearer tok" for r in seen)
    assert seen[0].url.path == f"/v1/vendors/projects/{PROJECT}/subscriptions"
    assert client.describe_list() == f"GET https://vendor.example/v1/vendors/projects/{PROJECT}/subscriptions"


async def test_approve_and_reject_post_to_the_subscription() -> None:
    posted: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append((request.url.path, request.content))
        return httpx.Response(200, json={})

    client = _client(handler)
    try:
        await client.approve("s-1")
        await client.reject("s-2", "UNKNOWN_PLAN: no plan")
    finally:
        await client.aclose()
    base = f"/v1/vendors/projects/{PROJECT}/subscriptions"
    assert posted[0] == (f"{base}/s-1/approve", b"")
    assert posted[1][0] == f"{base}/s-2/reject" and json.loads(posted[1][1]) == {
        "reason": "UNKNOWN_PLAN: no plan"
    }


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"message": "no"}),
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json=[1, 2]),
    ],
)
async def test_vendor_errors_become_one_exception_type(response: httpx.Response) -> None:
    client = _client(lambda request: response)
    try:
        with pytest.raises(StackitApiError):
            await client.list_subscriptions()
    finally:
        await client.aclose()


async def test_unreachable_vendor_is_an_api_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler)
    try:
        with pytest.raises(StackitApiError, match="ConnectError"):
            await client.approve("s-1")
    finally:
        await client.aclose()


def test_records_of_one_customer_product_share_a_key() -> None:
    sub = {"subscriptionId": "s-1", "organizationId": "o", "projectId": "p", "product": {"productId": "x"}}
    assert correlation_key(sub) == "o:p:x"
    assert correlation_key({**sub, "subscriptionId": "s-2"}) == "o:p:x"
    assert correlation_key({"subscriptionId": "s-3"}) == "s-3"
