"""Secret parameters of a source's address are masked however their names are written.

A camera percent-decodes a parameter's name before it reads it, so ``?%74oken=...`` hands it a
token and ``?p%61ssword=...`` a password; the masking read names as written and showed those
values to every viewer (``GET /api/streams``) and in the log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from types import FrameType

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.sources import mask_uri
from server.sources.uri import MIN_SECRET_IN_TEXT, has_raw_userinfo, mask_text

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


# -- signed URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        # nginx secure_link: the hash is the secret, when it expires is not.
        ("https://cdn.example/live/cam.m3u8?md5=Xq3bP0_aZ9&expires=1767225600", "https://cdn.example/live/cam.m3u8?md5=***&expires=1767225600"),
        # Akamai's token, in the query (hdnts) or as its edge cookie's value (hdnea).
        ("https://a.akamaihd.net/x/master.m3u8?hdnts=exp=1767225600~acl=/*~hmac=9f8e7d", "https://a.akamaihd.net/x/master.m3u8?hdnts=***"),
        ("https://a.akamaihd.net/x/master.m3u8?hdnea=st=1~exp=2~hmac=9f8e7d", "https://a.akamaihd.net/x/master.m3u8?hdnea=***"),
        # CloudFront: the policy goes with its signature.
        ("https://d1.cloudfront.net/cam.m3u8?Policy=eyJTdGF0ZW1lbnQ&Signature=Ab~Cd&Key-Pair-Id=K2J", "https://d1.cloudfront.net/cam.m3u8?Policy=***&Signature=***&Key-Pair-Id=***"),
        ("rtsp://cam.example/live?access_code=483920&channel=1", "rtsp://cam.example/live?access_code=***&channel=1"),
        ("rtsp://cam.example/live?Access-Code=483920", "rtsp://cam.example/live?Access-Code=***"),
        ("https://cdn.example/cam.flv?auth_key=1767225600-0-0-9f8e7d", "https://cdn.example/cam.flv?auth_key=***"),
        ("rtmp://wowza.example/live/cam?wowzatokenhash=Zm9v&wowzatokenendtime=1767225600", "rtmp://wowza.example/live/cam?wowzatokenhash=***&wowzatokenendtime=***"),
    ],
)  # fmt: skip
def test_the_secrets_of_a_signed_url_are_masked(uri: str, masked: str) -> None:
    """A CDN's signed URL let anyone who read ``GET /api/streams`` or the log play the stream until it expired."""
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://cam.example/live?codec=h264&pinhole=1&st=1767225600",  # no secret's names, only hold one
        "https://cdn.example/live.m3u8?expires=1767225600&e=1767225600",
    ],
)
def test_names_that_only_look_like_a_signed_urls_are_left_alone(uri: str) -> None:
    assert mask_uri(uri) == uri


# -- an '@' in a query or fragment, and the user info ---------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("rtsp://u:pw@cam/live?mail=a@b.com", "rtsp://u:***@cam/live?mail=a@b.com"),
        (
            "rtsp://adm:S3cret@10.0.0.7:554/live?channel=1&mail=a@b.com#timeout=3",
            "rtsp://adm:***@10.0.0.7:554/live?channel=1&mail=a@b.com#timeout=3",
        ),
        ("admin:pw@192.168.1.10/stream1?mail=a@b", "admin:***@192.168.1.10/stream1?mail=a@b"),
        ("rtsp://u:pw@cam/live#note=a@b", "rtsp://u:***@cam/live#note=a@b"),
        # A password with a raw '@' or '/' still hides whole: the '@' taken is the last before the query.
        ("rtsp://u:p@ss@cam/live?mail=a@b.com", "rtsp://u:***@cam/live?mail=a@b.com"),
        ("rtsp://u:p@ss/x@cam/live?mail=a@b.com", "rtsp://u:***@cam/live?mail=a@b.com"),
        # No '@' before the query: no user info, and a port is no password (it showed ``rtsp://cam:***@b.com``).
        ("rtsp://cam:554/live?mail=a@b.com", "rtsp://cam:554/live?mail=a@b.com"),
        ("rtsp://10.0.0.5:554/Streaming/Channels/101?user=x@y", "rtsp://10.0.0.5:554/Streaming/Channels/101?user=x@y"),
        ("rtsp://[::1]:554/live?mail=a@b.com", "rtsp://[::1]:554/live?mail=a@b.com"),
    ],
)
def test_an_at_sign_in_a_query_value_leaves_the_host_shown(uri: str, masked: str) -> None:
    """It hid the host and path too (``rtsp://u:***@b.com``): the user info ran to the URI's last '@'."""
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("rtsp://tok3n@cam/live?mail=a@b.com", "rtsp://***@cam/live?mail=a@b.com"),
        ("rtsp://tok3n@cam/clips/a@b.mp4", "rtsp://***@b.mp4"),
    ],
)
def test_a_token_before_an_at_sign_in_the_path_or_query_is_hidden(uri: str, masked: str) -> None:
    """FFmpeg sends ``tok3n`` as the user; it was shown whole, read as a path's '/' in a user name."""
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        # A password that may hold a raw '/' and an '@', or a raw '?' or '#': all of it goes, and the host too.
        ("rtsp://u:pa/ss@cam/", "rtsp://u:***@cam/"),
        ("rtsp://u:p@ss/x@cam/", "rtsp://u:***@cam/"),
        ("rtsp://u:pa/ss?x@cam/", "rtsp://u:***@cam/"),
        ("rtsp://u:p@ss/x?y@cam/", "rtsp://u:***@cam/"),  # the '@' in "?y@cam" is no query value's
        ("rtsp://adm:p@ss?Zq7@cam/", "rtsp://adm:***@cam/"),
        ("rtsp://adm:p@ss#Zq7@cam/", "rtsp://adm:***@cam/"),
        ("rtsp://u:pw@cam/clips/a@b.mp4", "rtsp://u:***@b.mp4"),
        # An '@' after the first '?' in no query value: the '?' may be the password's (it showed "ss/x?y").
        ("rtsp://adm:p@ss/x?y@cam.local/live?mail=a@b.com", "rtsp://adm:***@b.com"),
        # A password with a raw '/' and '?', then a host and port: not taken for a host and port itself.
        ("rtsp://adm:pa/?x@cam.local:554/live?mail=a@b.com", "rtsp://adm:***@b.com"),
        ("rtsp://u:pa/ss@cam/live?mail=a@b.com", "rtsp://u:***@b.com"),
        # A password of digits, a raw '/' and '?', read as a port, a path and a query: still hidden.
        ("rtsp://admin:12/a?b=c@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:1234/x#k=v@cam/stream", "rtsp://admin:***@cam/stream"),
        ("http://u:123/v?a=1@h/p", "http://u:***@h/p"),
        # No user info: the '@' is in a path, a query or a file's name.
        ("/videos/me@home.mp4", "/videos/me@home.mp4"),
        ("file:///videos/me@home.mp4", "file:///videos/me@home.mp4"),
        ("rtsp://cam/live?x=a@b", "rtsp://cam/live?x=a@b"),
        ("http://cam.local?mail=a@b.com", "http://cam.local?mail=a@b.com"),
    ],
)
def test_where_the_password_may_end_later_all_of_it_is_hidden(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


#: Passwords typed with a raw '@' and '/' (which segcast takes), and query or fragment tails with an '@'.
PASSWORDS_WITH_AT = ("Qx@Wv/Jk", "Qx@WvJk", "Qx/WvJk", "QxWvJk")
TAILS_WITH_AT = ("", "?mail=a@b.com", "?id=1&mail=a@b.com#timeout=3", "#note=a@b", "?a@b", "/a@b.mp4")


@pytest.mark.parametrize("tail", TAILS_WITH_AT)
@pytest.mark.parametrize("password", PASSWORDS_WITH_AT)
def test_an_at_sign_after_the_password_never_shows_a_piece_of_it(password: str, tail: str) -> None:
    uri = f"rtsp://adm:{password}@cam.local/live{tail}"
    masked = mask_uri(uri)
    shown = [password[i : i + 3] for i in range(len(password) - 2) if password[i : i + 3] in masked]
    assert not shown, masked
    assert masked.startswith("rtsp://adm:***@")


def test_an_error_about_a_camera_with_an_at_sign_in_its_query_still_names_its_host() -> None:
    """The password was read as ``S3cret-pw@cam.local/live?mail=a``, so every piece of the host went too."""
    uri = "rtsp://adm:S3cret-pw@cam.local/live?mail=a@b.com"
    told = mask_text("cam.local: connection refused (live, user adm, password S3cret-pw)", uri)
    assert told == "cam.local: connection refused (live, user adm, password ***)"


@pytest.mark.parametrize("length", [MIN_SECRET_IN_TEXT, MIN_SECRET_IN_TEXT + 1])
def test_a_password_as_long_as_the_shortest_searched_for_is_masked_in_an_error(length: int) -> None:
    password = "Zq7k9w"[:length]
    told = mask_text(f"cam.local: 401 Unauthorized (password {password})", f"rtsp://admin:{password}@cam.local/live")
    assert told == "cam.local: 401 Unauthorized (password ***)"


def test_a_password_shorter_than_the_shortest_searched_for_is_left_in_an_error() -> None:
    """Masking every "1" of an error for a password of "1" would leave it unreadable."""
    password = "Zq7k9w"[: MIN_SECRET_IN_TEXT - 1]
    error = f"cam.local: 401 Unauthorized (password {password})"
    assert mask_text(error, f"rtsp://admin:{password}@cam.local/live") == error


@pytest.mark.parametrize(
    ("uri", "refused"),
    [
        ("rtsp://adm:p@ss?Zq7@cam/", True),
        ("rtsp://adm:p@ss#Zq7@cam/", True),
        ("rtsp://tok3n@cam?x=a@b", True),
        ("rtsp://u:pw@cam/live?mail=a@b.com", False),
        ("rtsp://u:p@ss/x@cam/live?mail=a@b.com", False),
        ("rtsp://cam:554/live?mail=a@b.com", False),
        ("rtsp://u:pa/ss@cam/", False),
    ],
)
def test_a_raw_question_mark_or_hash_in_the_user_info_is_still_told_apart(uri: str, refused: bool) -> None:
    assert has_raw_userinfo(uri) is refused


def test_a_token_before_a_query_straight_after_the_host_with_a_slash_and_an_at_sign_is_refused() -> None:
    """Refused like ``tok3n@cam?x=a@b``; it was taken, and ``tok3n`` shown, for the '/' in the query."""
    uri = "rtsp://tok3n@cam?next=/a@b"
    assert has_raw_userinfo(uri)
    assert "tok3n" not in mask_uri(uri)


async def test_viewers_see_the_host_of_a_camera_with_an_at_sign_in_its_query(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "rtsp://adm:S3cret-pw@127.0.0.1:1/live?mail=a@b.com"))
    response = await client.get("/api/streams")
    listed = await response.text()
    assert response.status == 200, listed
    assert "rtsp://adm:***@127.0.0.1:1/live?mail=a@b.com" in listed
    assert "S3cret-pw" not in listed


def python_calls(function: Callable[[str], object], text: str) -> int:
    """How many Python calls (generators resumed included) ``function(text)`` makes: a measure of its
    work that neither the machine's speed nor its load changes."""
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        calls += 1

    sys.setprofile(count)
    try:
        function(text)
    finally:
        sys.setprofile(None)
    return calls


def at_signs_in_secrets(pairs: int) -> str:
    return "http://u:p@h/x?" + "p=@&" * pairs


def test_masking_a_uri_takes_work_in_proportion_to_its_length() -> None:
    """Each '@' was checked against every secret value: a 60 kB URI of ``p=@&`` pairs took seven seconds,
    on the event loop of the API that masked it, and `mask_uri` masks any text it is given."""
    short, long = (python_calls(mask_uri, at_signs_in_secrets(pairs)) for pairs in (250, 1000))
    assert long / short < 6, f"4 times the text took {long / short:.1f} times the work"
    assert mask_uri(at_signs_in_secrets(15_000)) == "http://u:***@h/x?" + "p=***&" * 15_000
