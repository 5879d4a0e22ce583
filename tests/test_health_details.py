"""``/healthz`` answers anyone whether the node is healthy, and only a token's holder what it runs.

A node with tokens on told whoever reached it, with no token, its exact version (what an attacker
matches against known flaws), how many cameras it runs and its inference's errors. A probe (Docker's,
Kubernetes', systemd's) needs the status code alone; the split asks with the token it has. Each test
runs the real app; the cameras are files that do not exist (listed, sending nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.deploy import running_nodes
from server.deploy.running_nodes import Answer
from server.frames import PROTOCOL_VERSION
from server.http.metrics import SEGCAST_VERSION
from server.inference.worker import InferenceWorker
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(90)

ADMIN = "health-admin-token-0123456789abcdef"
VIEWER = "health-viewer-token-0123456789abcdef"
TOKENS = {"admin_tokens": (ADMIN,), "viewer_tokens": (VIEWER,)}
LISTED = (StreamConfig("front", "/no/such/front.mp4"), StreamConfig("back", "/no/such/back.mp4"))
#: What a node tells a token's holder beyond whether it is healthy.
DETAILS = {"version", "streams", "behind", "inference", "config_read_at"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _health(client: TestClient, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/healthz", **kwargs)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_a_probe_without_a_token_is_told_only_that_the_node_is_healthy(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    assert await _health(client) == (200, {"status": "ok", "v": PROTOCOL_VERSION})


async def test_a_token_the_node_does_not_take_is_told_no_more_and_refused_nothing(start_server: Start) -> None:
    """A probe with a stale token is still a probe: a 401 would restart a healthy node."""
    client = await start_server(*LISTED, **TOKENS)
    assert await _health(client, headers=_bearer("not-a-token-of-this-node")) == (
        200,
        {"status": "ok", "v": PROTOCOL_VERSION},
    )


async def test_a_dashboards_link_is_told_no_more_than_a_probe(start_server: Start) -> None:
    """A link scoped to one camera opens that camera alone, not how many the node runs nor its version."""
    client = await start_server(*LISTED, **TOKENS)
    minted = await client.post("/api/tokens", json={"scope": {"streams": ["front"]}}, headers=_bearer(VIEWER))
    link = (await minted.json())["token"]
    assert await _health(client, params={"token": link}) == (200, {"status": "ok", "v": PROTOCOL_VERSION})


@pytest.mark.parametrize("token", [VIEWER, ADMIN])
async def test_a_token_holder_reads_the_nodes_details(start_server: Start, token: str) -> None:
    client = await start_server(*LISTED, **TOKENS)
    status, body = await _health(client, headers=_bearer(token))
    assert status == 200 and body["status"] == "ok"
    assert body.keys() >= DETAILS, body
    assert (body["version"], body["streams"]) == (SEGCAST_VERSION, 2)


async def test_a_node_without_tokens_tells_anyone_its_details(start_server: Start) -> None:
    client = await start_server(*LISTED)
    status, body = await _health(client)
    assert status == 200 and body.keys() >= DETAILS, body


def _exits(self: InferenceWorker) -> Any:
    raise SystemExit("a library gave up")


async def test_a_failing_node_says_failing_without_a_token_and_why_with_one(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 503 a probe restarts the node on comes with or without a token; why it fails, with one."""
    monkeypatch.setattr(InferenceWorker, "_take_batch", _exits)
    client = await start_server(*LISTED, **TOKENS)

    async def failing() -> tuple[int, dict[str, Any]] | None:
        answer = await _health(client)
        return answer if answer[0] != 200 else None

    assert await eventually(failing, what="/healthz to fail") == (503, {"status": "failing", "v": PROTOCOL_VERSION})
    status, body = await _health(client, headers=_bearer(VIEWER))
    assert status == 503 and body["status"] == "failing"
    assert body["inference"]["error"] == "inference thread stopped: SystemExit: a library gave up"


async def test_a_split_tells_a_node_with_tokens_for_segcast(start_server: Start) -> None:
    """What answers at an earlier node's address: segcast, though it tells a question without a token no count."""
    client = await start_server(*LISTED, **TOKENS)
    assert client.port is not None
    answered = await asyncio.to_thread(running_nodes.answer_at, "127.0.0.1", client.port)
    assert answered.kind is Answer.SEGCAST, answered


async def test_a_split_reads_what_a_node_with_tokens_runs_with_the_token_it_takes(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    assert client.port is not None
    said = await asyncio.to_thread(running_nodes.streams_of, "127.0.0.1", client.port, ("stale", VIEWER))
    assert said is not None
    assert (said.count, sorted(said.ids or ()), said.took) == (2, ["back", "front"], VIEWER)


async def test_a_split_without_a_token_the_node_takes_says_why_it_cannot_tell_what_it_runs(
    start_server: Start,
) -> None:
    """No count guessed: the node tells it to a token's holder alone."""
    client = await start_server(*LISTED, **TOKENS)
    assert client.port is not None
    said = await asyncio.to_thread(running_nodes.streams_of, "127.0.0.1", client.port, ("stale",))
    assert said is not None
    assert (said.count, said.ids) == (None, None)
    assert "took none of the 1 token" in said.unnamed_because
