"""A scoped token refused outside its scope is counted and told like any refused credential.

A dashboard's link that leaked, tried on the node's other routes, was answered 403 and seen nowhere:
``segcast_auth_refused_total`` counted no reason for it and the log said nothing. The real app with tokens on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(90)

ADMIN = "refusal-admin-token-0123456789abcdef"
VIEWER = "refusal-viewer-token-0123456789abcdef"
TOKENS = {"admin_tokens": (ADMIN,), "viewer_tokens": (VIEWER,)}
LISTED = (StreamConfig("front", "/no/such/front.mp4"), StreamConfig("back", "/no/such/back.mp4"))
OUT_OF_SCOPE = 'segcast_auth_refused_total{reason="out_of_scope"}'


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _front_link(client: TestClient) -> str:
    minted = await client.post("/api/tokens", json={"scope": {"streams": ["front"]}}, headers=_bearer(VIEWER))
    assert minted.status == 200, await minted.text()
    token: str = (await minted.json())["token"]
    return token


async def _refused_out_of_scope(client: TestClient) -> float | None:
    """The count of out-of-scope refusals /metrics gives; None where it names no such reason."""
    text = await (await client.get("/metrics", headers=_bearer(ADMIN))).text()
    counts = [float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(OUT_OF_SCOPE + " ")]
    return counts[0] if counts else None


async def test_a_link_tried_outside_its_scope_is_counted_as_out_of_scope(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    assert await _refused_out_of_scope(client) == 0

    for path in ("/api/streams/back", "/api/events", "/metrics"):
        assert (await client.get(path, params={"token": link})).status == 403, path
    assert (await client.get("/api/streams/front", params={"token": link})).status == 200

    assert await _refused_out_of_scope(client) == 3


async def test_a_link_tried_outside_its_scope_is_told_in_the_log_without_the_token(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    caplog.set_level(logging.WARNING, logger="server.http.access.refusals")

    assert (await client.get("/api/streams/back", params={"token": link})).status == 403

    told = [record.getMessage() for record in caplog.records if record.name == "server.http.access.refusals"]
    assert len(told) == 1 and "1 with a scoped token outside its scope" in told[0], told
    assert link not in caplog.text
