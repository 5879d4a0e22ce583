"""TURN credentials in `SEGCAST_ICE_SERVERS`: a password with a space or comma in it, which the list
is split on, is written percent-encoded; one that is not is refused without any of it in the error."""

from __future__ import annotations

import pytest

from server.config_values import ConfigError
from server.webrtc import IceServer, WebRTCConfig
from server.webrtc.config import ICE_SERVERS_ENV

USER = "alice"
#: Each piece is checked for on its own: a split password's error showed the piece before the split.
PASSWORD_PIECES = ("hunter", "2secret", "9words")


@pytest.mark.parametrize("separator", [",", " ", ", "])
def test_a_turn_password_split_by_a_comma_or_space_is_refused_without_showing_any_of_it(separator: str) -> None:
    password = separator.join(PASSWORD_PIECES)
    value = f"stun:stun.example.org turn:{USER}:{password}@turn.example.org:3478"
    with pytest.raises(ConfigError, match=f"^{ICE_SERVERS_ENV}: ") as error:
        WebRTCConfig.from_env({ICE_SERVERS_ENV: value})
    message = str(error.value)
    assert not [piece for piece in (USER, *PASSWORD_PIECES) if piece in message], message
    assert "%2C" in message and "%20" in message, "the error says how to write them"


@pytest.mark.parametrize("bad", ["2secret@turn.example.org:3478", "https://alice:hunter@example.org", "hunter"])
def test_no_piece_of_a_bad_value_that_may_be_a_password_is_shown(bad: str) -> None:
    with pytest.raises(ConfigError) as error:
        WebRTCConfig.from_env({ICE_SERVERS_ENV: bad})
    assert not [piece for piece in (USER, *PASSWORD_PIECES) if piece in str(error.value)], str(error.value)


@pytest.mark.parametrize(("written", "password"), [("two%2Cwords", "two,words"), ("two%20words", "two words")])
def test_a_space_or_comma_in_a_turn_password_is_written_percent_encoded(written: str, password: str) -> None:
    config = WebRTCConfig.from_env({ICE_SERVERS_ENV: f"stun:stun.example.org,turn:{USER}:{written}@turn.example.org"})
    assert [(s.url, s.username, s.credential) for s in config.ice_servers] == [
        ("stun:stun.example.org", None, None),
        ("turn:turn.example.org", USER, password),
    ]


def test_an_ice_servers_repr_never_shows_its_password() -> None:
    """Settings and configs end up in debug logs and tracebacks by their repr."""
    server = IceServer.parse(f"turn:{USER}:hunter2secret@turn.example.org")
    assert server.credential == "hunter2secret"
    for text in (repr(server), repr(WebRTCConfig((server,)))):
        assert "hunter2secret" not in text and "turn.example.org" in text
