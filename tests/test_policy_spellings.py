"""Other spellings of what the API's source policy refuses are refused too.

An IPv6 address that carries an IPv4 one a connection reaches (IPv4-compatible, NAT64, 6to4) is held to
``deny_networks`` as the IPv4-mapped form is; characters that move a terminal's cursor or end a log line
(C1 controls, line and paragraph separators, bidirectional controls) are control characters as C0 are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.http.access.policy import SourcePolicy, SourceRefused, parse_networks
from tests.support.ports import held_closed_port

Start = Callable[..., Awaitable[TestClient]]


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:169.254.169.254]",  # IPv4-mapped: refused before
        "[::169.254.169.254]",  # IPv4-compatible
        "[64:ff9b::169.254.169.254]",  # NAT64, RFC 6052's well-known prefix
        "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
    ],
)
async def test_an_ipv6_spelling_of_a_denied_ipv4_address_is_a_403(start_server: Start, host: str) -> None:
    client = await start_server()
    response = await client.post("/api/streams", json={"id": "meta", "uri": f"http://{host}/latest/meta-data/"})
    assert response.status == 403, await response.text()
    assert "deny_networks" in (await response.json())["error"]
    assert (await (await client.get("/api/streams")).json())["streams"] == []


def test_the_unspecified_and_loopback_ipv6_addresses_carry_no_ipv4_address() -> None:
    """``::`` and ``::1`` lie in ``::/96`` but are no IPv4-compatible 0.0.0.0 and 0.0.0.1; ``::2`` is 0.0.0.2."""
    policy = SourcePolicy(deny_networks=parse_networks(["0.0.0.0/8"]))
    policy.check("http://[::1]/x")
    policy.check("http://[::]/x")
    with pytest.raises(SourceRefused, match="deny_networks"):
        policy.check("http://[::2]/x")


@pytest.mark.parametrize(
    "text",
    [
        "\x9b31mRED\x9b0m",  # CSI, a C1 control: an escape sequence in a terminal
        "\x85FAKE",  # NEL: a new line to some log viewers
        "\u2028FAKE",  # LINE SEPARATOR
        "\u2029FAKE",  # PARAGRAPH SEPARATOR
        "\u202egpj.exe",  # RIGHT-TO-LEFT OVERRIDE
        "\u2066x\u2069",  # LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
        "\x80",
        "\x9f",
    ],
)
async def test_c1_separators_and_bidi_controls_in_a_uri_are_a_400(
    start_server: Start, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_server()
    response = await client.post("/api/streams", json={"id": "cam", "uri": f"http://example.invalid/{text}"})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "body.uri: control characters are not allowed"
    assert (await (await client.get("/api/streams")).json())["streams"] == []
    assert not any(text in record.getMessage() for record in caplog.records), "nothing of it reached the log"


async def test_letters_beyond_the_c1_controls_stay_allowed(start_server: Start) -> None:
    """No-break space (0xA0, just past the C1 controls) and accented letters are text a path may hold."""
    with held_closed_port() as port:
        client = await start_server()
        response = await client.post("/api/streams", json={"id": "cam", "uri": f"http://127.0.0.1:{port}/caf\xe9\xa0"})
        assert response.status == 201, await response.text()
        await client.close()  # while the port is still held


async def test_a_ca_file_is_not_chosen_through_the_api_and_tls_verify_is(start_server: Start) -> None:
    """A ``#ca_file=`` names a file on the server: a stream failing to read it would tell whether it exists."""
    client = await start_server()
    refused = await client.post(
        "/api/streams", json={"id": "cam", "uri": "https://camera.local/v.mjpg#ca_file=/etc/shadow"}
    )
    assert refused.status == 403, await refused.text()
    error = (await refused.json())["error"]
    assert "ca_file names a file on the server" in error and "/etc/shadow" in error
    assert (await (await client.get("/api/streams")).json())["streams"] == []
    accepted = await client.post("/api/streams", json={"id": "cam", "uri": "https://camera.local/v.mjpg#tls_verify=1"})
    assert accepted.status == 201, await accepted.text()


def test_a_denied_address_written_with_a_trailing_dot_is_refused() -> None:
    """``169.254.169.254.`` is no address to Python and no name to this machine's resolver, so it passed as a
    name that does not resolve; a resolver that takes the root's dot would reach the denied address."""
    policy = SourcePolicy(deny_networks=parse_networks(["169.254.0.0/16"]))
    with pytest.raises(SourceRefused, match="deny_networks"):
        policy.check("http://169.254.169.254./latest/meta-data/")
    policy.check("http://192.0.2.1./x")  # an allowed one stays allowed
