"""Connections limited where they are accepted, before any token is read: in all and per client address.

Anyone who can reach the port could otherwise hold open connections (a request every few seconds keeps
them alive) until the process has no file left and nobody, the admin included, gets an answer. The
servers here run on `ConnectionLimitingLoop`, as ``segcast serve`` does, with limits small enough to
reach; the app behind is a bare one, since the limit is met before any of segcast's routes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

import server.serve
from server.app import create_app
from server.config import Settings
from server.delivery.viewer import ViewerLimits, is_local_client
from server.http.network import connections
from server.http.network.connections import (
    PAGE_CONNECTIONS,
    AcceptFailuresAreOneWarning,
    ConnectionCounter,
    ConnectionLimitingLoop,
    ConnectionLimits,
    raise_open_files_limit,
)
from server.http.network.serving import server_options
from server.inference.models import BUNDLED_MODEL
from tests.support.raw_http import status_of

#: Bound on every wait for the server; far above what a loaded machine needs.
WAIT_S = 10.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Scenario = Callable[[int], Awaitable[None]]


def _serve_on_limiting_loop(limits: ConnectionLimits, scenario: Scenario) -> None:
    """Run ``scenario(port)`` against a server on a `ConnectionLimitingLoop` with ``limits``."""
    loop = ConnectionLimitingLoop(limits)
    try:
        loop.run_until_complete(asyncio.wait_for(_serving(scenario), 6 * WAIT_S))
    finally:
        loop.close()


async def _serving(scenario: Scenario, app: web.Application | None = None) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response()

    if app is None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, **server_options())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await scenario(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def _open(port: int) -> Client:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT_S)


async def _ask(client: Client) -> int:
    """The status of ``GET /healthz`` on the kept-alive connection ``client``."""
    reader, writer = client
    writer.write(HEALTHZ)
    await writer.drain()
    return status_of(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S))


async def _answer_without_asking(port: int) -> bytes:
    """What the server sends a new connection that sends nothing, until it closes it (bounded)."""
    reader, writer = await _open(port)
    try:
        return await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def _running_counter() -> ConnectionCounter:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ConnectionLimitingLoop)
    return loop.connections


async def _open_answered(port: int, count: int) -> list[Client]:
    """``count`` connections, each answered once: so the server has accepted and counted them."""
    clients = [await _open(port) for _ in range(count)]
    for client in clients:
        assert await _ask(client) == 200
    return clients


def test_a_connection_over_the_total_limit_is_refused_at_once_and_open_ones_are_still_answered() -> None:
    async def scenario(port: int) -> None:
        clients = await _open_answered(port, 3)
        try:
            assert status_of(await _answer_without_asking(port)) == 503  # closed, not left waiting
            for client in clients:
                assert await _ask(client) == 200
        finally:
            for _, writer in clients:
                await _close(writer)

    _serve_on_limiting_loop(ConnectionLimits(total=3), scenario)


def test_a_closed_connection_makes_room_for_a_new_one() -> None:
    async def scenario(port: int) -> None:
        clients = await _open_answered(port, 2)
        try:
            await _close(clients.pop()[1])
            counter = _running_counter()
            deadline = time.monotonic() + WAIT_S
            while counter.total > 1:  # the server sees the end a moment after the client closed
                assert time.monotonic() < deadline, "the closed connection is still counted"
                await asyncio.sleep(0.01)
            clients += await _open_answered(port, 1)
        finally:
            for _, writer in clients:
                await _close(writer)

    _serve_on_limiting_loop(ConnectionLimits(total=2), scenario)


def test_a_connection_over_the_limit_of_its_address_is_refused_while_the_total_leaves_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test's own address is loopback, never limited per address: count it as a remote client's.
    monkeypatch.setattr(connections, "is_local_client", lambda address: False)

    async def scenario(port: int) -> None:
        clients = await _open_answered(port, 2)
        try:
            assert status_of(await _answer_without_asking(port)) == 503
            assert [await _ask(client) for client in clients] == [200, 200]
            assert _running_counter().refused_by == {"total": 0, "per_address": 1}
        finally:
            for _, writer in clients:
                await _close(writer)

    _serve_on_limiting_loop(ConnectionLimits(total=100, per_address=2), scenario)


def test_open_and_refused_connections_are_in_the_metrics() -> None:
    """``/metrics`` of segcast's own app, served on the limiting loop as `segcast serve` serves it."""
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=()))

    async def scenario(port: int) -> None:
        clients = await _open_answered(port, 2)
        try:
            assert status_of(await _answer_without_asking(port)) == 503
            reader, writer = clients[0]
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            text = (await asyncio.wait_for(reader.read(), WAIT_S)).decode()
        finally:
            for _, writer in clients:
                await _close(writer)
        assert "\nsegcast_connections 2\n" in text
        assert 'segcast_connections_refused_total{limit="total"} 1\n' in text
        assert 'segcast_connections_refused_total{limit="per_address"} 0\n' in text

    loop = ConnectionLimitingLoop(ConnectionLimits(total=2))
    try:
        loop.run_until_complete(asyncio.wait_for(_serving(scenario, app), 6 * WAIT_S))
    finally:
        loop.close()


def test_each_address_has_its_own_limit_and_loopback_a_proxy_uses_for_everyone_has_none() -> None:
    counter = ConnectionCounter(ConnectionLimits(total=100, per_address=2))
    assert counter.admit("203.0.113.5") and counter.admit("203.0.113.5")
    assert not counter.admit("203.0.113.5")
    assert counter.admit("2001:db8::7")  # another client is not held back by the first
    assert all(counter.admit("127.0.0.1") for _ in range(20))  # the scale-out entrance, say
    assert all(counter.admit("::1") for _ in range(20))
    counter.release("203.0.113.5")
    assert counter.admit("203.0.113.5")
    assert counter.total == 2 + 1 + 40


@pytest.mark.parametrize(
    ("address", "local"),
    [
        pytest.param("/run/segcast.sock", True, id="unix-socket-path"),
        pytest.param("", True, id="unix-socket-unnamed"),  # aiohttp's request.remote over a Unix socket
        pytest.param("127.0.0.1", True, id="loopback-v4"),
        pytest.param("::1", True, id="loopback-v6"),
        pytest.param("203.0.113.5", False, id="network-v4"),
        pytest.param("2001:db8::7", False, id="network-v6"),
    ],
)
def test_clients_on_this_machine_are_local_those_over_the_network_are_not(address: str, local: bool) -> None:
    """A Unix socket's peer is a process on this machine (a reverse proxy): limited per address, all of a
    proxy's viewers would share one address's allowance."""
    assert is_local_client(address) is local


def test_the_total_limit_holds_for_loopback_too() -> None:
    counter = ConnectionCounter(ConnectionLimits(total=3, per_address=1))
    assert [counter.admit("127.0.0.1") for _ in range(4)] == [True, True, True, False]


def test_the_limits_leave_part_of_the_open_files_to_the_rest_of_the_server() -> None:
    limits = ConnectionLimits.for_open_files(20_000)
    assert 0 < limits.total < 20_000
    assert limits.per_address < limits.total
    assert ConnectionLimits.for_open_files(20_000, 1000).per_address == 1000 + PAGE_CONNECTIONS


@pytest.fixture
def lowered_open_files_limit() -> Iterator[int]:
    """The soft open-files limit set below the hard one, as many systems start processes; the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, hard // 2)
    if lowered <= 64:
        pytest.skip(f"the hard open-files limit ({hard}) leaves no room to lower the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_open_files_limit_is_raised_to_the_hard_one(lowered_open_files_limit: int) -> None:
    assert raise_open_files_limit() == lowered_open_files_limit
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lowered_open_files_limit


def test_segcast_serve_runs_its_server_on_a_connection_limiting_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(server.serve.web, "run_app", lambda app, **kwargs: ran.update(kwargs))
    monkeypatch.setattr(server.serve, "say", lambda line: None)
    viewers = ViewerLimits(max_viewers_per_address=1000)
    settings = Settings(model=str(BUNDLED_MODEL), host="127.0.0.1", port=0, viewer_limits=viewers)
    server.serve.serve(settings, None, sys.exit)
    loop = ran["loop"]
    try:
        assert isinstance(loop, ConnectionLimitingLoop)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert loop.connections.limits == ConnectionLimits.for_open_files(soft, 1000)
        assert loop.connections.limits.per_address > 1000, "a raised max_viewers_per_address is not undercut"
    finally:
        loop.close()


@pytest.fixture
def fresh_accept_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter installed on asyncio's logger, replaced by a new one: none of its lines logged yet."""
    logger = logging.getLogger("asyncio")
    installed = [f for f in logger.filters if isinstance(f, AcceptFailuresAreOneWarning)]
    assert len(installed) == 1
    fresh = [AcceptFailuresAreOneWarning() if f is installed[0] else f for f in logger.filters]
    monkeypatch.setattr(logger, "filters", fresh)


@pytest.mark.usefixtures("fresh_accept_filter")
async def test_a_burst_of_failed_accepts_is_one_warning_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop = asyncio.get_running_loop()
    with socket.socket() as listening:
        for _ in range(200):  # as asyncio reports each connection it could not accept
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError as error:
                loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": error, "socket": listening}
                )
    loop.call_exception_handler({"message": "something else went wrong"})
    lines = [record for record in caplog.records if record.name == "asyncio"]
    assert [(r.levelno, "Too many open files" in r.getMessage(), r.exc_info) for r in lines[:1]] == [
        (logging.WARNING, True, None)
    ]
    assert "Traceback" not in caplog.text
    assert [r.getMessage() for r in lines[1:]] == ["something else went wrong"]  # other errors untouched
