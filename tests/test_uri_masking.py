"""Secret parameters of a source's address are masked however their names are written.

A camera percent-decodes a parameter's name before it reads it, so ``?%74oken=...`` hands it a
token and ``?p%61ssword=...`` a password; the masking read names as written and showed those
values to every viewer (``GET /api/streams``) and in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.sources import mask_uri
from server.sources.uri import mask_text

Start = Callable[..., Awaitable[TestClient]]

#: Each form a security review got past the masking, by the secret it leaked.
ENCODED_NAMES = {
    "SECRET4-token": "rtsp://127.0.0.1:1/s?%74oken=SECRET4-token",
    "SECRETE-eq": "rtsp://127.0.0.1:1/s?user=a&password%3D=SECRETE-eq",
    "SECRETN-pa": "rtsp://127.0.0.1:1/s?p%61ssword=SECRETN-pa",
    "SECRET-upper": "http://127.0.0.1:1/v?user=a&%50ASS%57ORD=SECRET-upper&res=hd",
    "SECRET-under": "http://127.0.0.1:1/v?access%5Fkey=SECRET-under",
    "SECRET-path": "rtsp://127.0.0.1:1/s;%70wd=SECRET-path",
}


@pytest.mark.parametrize(("secret", "uri"), ENCODED_NAMES.items())
def test_a_percent_encoded_secret_name_is_masked(secret: str, uri: str) -> None:
    masked = mask_uri(uri)
    assert secret not in masked
    assert masked == uri.replace(secret, "***")  # the name is left as written: only the value goes
    assert secret not in mask_text(f"{uri}: 401 Unauthorized ({secret})", uri)


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://cam/live?channel=%31&sub%74ype=0",  # encoded, and no secret's name
        "http://cam/v.cgi?us%65r=admin&res=hd",
        "rtsp://cam/live?a=%ZZ&b=1",  # not an encoding: left alone, as before
    ],
)
def test_an_encoded_name_that_is_no_secrets_is_left_alone(uri: str) -> None:
    assert mask_uri(uri) == uri


async def test_viewers_and_the_log_never_see_a_secret_behind_an_encoded_name(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    streams = [StreamConfig(f"cam{i}", uri) for i, uri in enumerate(ENCODED_NAMES.values())]
    client = await start_server(*streams)
    response = await client.get("/api/streams")
    listed = await response.text()
    assert response.status == 200, listed
    assert "%74oken=***" in listed  # the streams are there, masked
    assert "[cam0] added: rtsp://127.0.0.1:1/s?%74oken=***" in caplog.text
    for secret in ENCODED_NAMES:
        assert secret not in listed
        assert secret not in caplog.text
