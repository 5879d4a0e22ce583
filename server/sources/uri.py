"""Reading source URIs: masking credentials and taking segcast's own options out of the fragment.

segcast's per-source options ride in the URI fragment (``rtsp://cam/live#transport=udp``) because the
fragment is the one part of a URL that is never sent to the camera: a camera's own query string
(``?channel=1&subtype=0``) passes through untouched, and no option name of ours can clash with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote

from server.sources.base import SourceError

MASK = "***"

#: Parameter names whose values are secrets: some cameras take credentials or tokens in the query
#: string, in ``;key=value`` path parameters, or (Dahua) in the path as ``user=..._password=...``.
_SECRET_WORDS = r"pass|pwd|psw|token|secret|key|auth|sig|cred|session"
#: Endings too short to look for anywhere in a name, but a password's at its end (VStarcam's
#: ``loginuse=admin&loginpas=...``, ``userpw``).
_SECRET_ENDINGS = r"pas|pw"
_SECRET_NAMES = r"p|pin"
#: A secret's name, as a camera reads it: percent-decoded. It holds a secret word, ends in a secret
#: ending or is a short secret name.
_SECRET_NAME = re.compile(
    rf".*(?:{_SECRET_WORDS}).*|.*(?:{_SECRET_ENDINGS})|{_SECRET_NAMES}", re.IGNORECASE | re.DOTALL
)
#: The ``name=`` of a ``name=value`` pair after a separator. The name may be percent-encoded
#: (``%74oken``, ``p%61ssword``): a camera decodes it before it reads it, so it is judged decoded.
_PARAM_NAME = re.compile(r"(?<=[?&;/_])(?P<name>(?:[A-Za-z0-9.-]|%[0-9A-Fa-f]{2})*)=")
#: What ends a pair's value: the next pair or the fragment. A Dahua path's value swallows the rest of
#: the path, which hides more than the secret but never less.
_VALUE_END = re.compile(r"[&;#]")
#: ``scheme://userinfo@``, the user info running to the *last* '@' before the query or fragment, as
#: FFmpeg splits it: ``rtsp://admin:p@ss@cam/`` reaches the camera with the password ``p@ss``. A
#: password may even hold a raw '/'; a '/' in the user name means the '@' was in the path instead.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^?#]*)@")
#: A user info with a raw '?' or '#' before its '@' (``rtsp://admin:Secr3t#1@cam/``): no client reads
#: it as one (the host ends at the first '?' or '#'), so it can never connect, yet it is a password
#: all the same. It runs to the last '@' in the URI, which hides too much rather than too little,
#: unless a '=' or '&' comes first: that is a query straight after the host (``http://cam?mail=a@b``).
_RAW_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*[?#][^=&]*)@")
#: A user info in text with no ``scheme://`` (a camera's address typed without its scheme,
#: ``admin:S3cret@192.168.1.10/stream1``, which reads as a path, or as a URI of scheme ``admin``), to
#: the last '@' before a query or fragment, as in a URI. A '/' in its user name means the '@' is
#: further on, in a path (``/videos/me@home.mp4``), not after a user info.
_BARE_USERINFO = re.compile(r"^(?![A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^?#]*)@")
#: Shorter secrets are not searched for in free text: every "1" of an error message would go.
MIN_SECRET_IN_TEXT = 3


def mask_uri(uri: str) -> str:
    """``uri`` with its password (or a user name standing alone, which may be a token) and
    secret-looking parameter values replaced by ``***``.

    Safe on anything, including text that is not a URI at all, so every log line, API field and error
    message about a source can go through it. It errs on hiding too much: an '@' in a path hides the
    host before it.
    """
    masked = uri
    userinfo = _userinfo(uri)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon else MASK
        masked = _USERINFO.sub(lambda m: f"{m['scheme']}{shown}@", uri, count=1)
    elif has_raw_userinfo(uri):  # where its user name ends cannot be told: all of it goes
        masked = _RAW_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", uri, count=1)
    elif (bare := _bare_userinfo(uri)) is not None:
        user, colon, _ = bare.partition(":")
        masked = (f"{user}:{MASK}" if colon else MASK) + uri[len(bare) :]
    parts: list[str] = []
    end = 0
    for start, stop in _secret_values(masked):
        parts += [masked[end:start], MASK]
        end = stop
    return "".join(parts) + masked[end:]


def has_raw_userinfo(uri: str) -> bool:
    """Whether ``uri``'s user name or password holds a raw '?' or '#', which must be percent-encoded."""
    return _userinfo(uri) is None and _RAW_USERINFO.match(uri) is not None


def mask_text(text: str, uri: str) -> str:
    """``text`` (typically an FFmpeg error that quotes the URL, or a part of it) with ``uri``'s secrets masked."""
    text = text.replace(uri, mask_uri(uri))
    for secret in sorted(_secrets(uri), key=len, reverse=True):
        if len(secret) >= MIN_SECRET_IN_TEXT:
            text = text.replace(secret, MASK)
    return text


def _userinfo(uri: str) -> str | None:
    """The user info of ``uri`` as FFmpeg reads it, or None if it has none."""
    match = _USERINFO.match(uri)
    if match is None or "/" in match["userinfo"].partition(":")[0]:
        return None
    return match["userinfo"]


def _bare_userinfo(uri: str) -> str | None:
    """The user info of ``uri`` written without a ``scheme://`` (see `_BARE_USERINFO`), or None."""
    match = _BARE_USERINFO.match(uri)
    if match is None or "/" in match["userinfo"].partition(":")[0]:
        return None
    return match["userinfo"]


def _secret_values(uri: str) -> Iterator[tuple[int, int]]:
    """Where the values of ``uri``'s secret parameters lie (start, end), left to right.

    A pair whose name is no secret's is passed over by its name alone: its value may hold the next
    pair (a Dahua path's ``user=admin_password=...``).
    """
    position = 0
    while (name := _PARAM_NAME.search(uri, position)) is not None:
        position = name.end()
        if _SECRET_NAME.fullmatch(unquote(name["name"])):
            end = _VALUE_END.search(uri, position)
            start, position = position, len(uri) if end is None else end.start()
            yield start, position


def _secrets(uri: str) -> list[str]:
    """The secret parts of ``uri`` as they are written in it, and percent-decoded."""
    found = [uri[start:stop] for start, stop in _secret_values(uri)]
    raw = _RAW_USERINFO.match(uri)
    userinfo = _userinfo(uri) or (raw["userinfo"] if raw else None) or _bare_userinfo(uri)
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    return [form for secret in found if secret for form in {secret, unquote(secret)}]


def split_options(uri: str, known: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Split ``uri#key=value&...`` into the URI to open and segcast's options for it.

    ``known`` maps each option this source kind accepts to its default; an unknown key is a
    `SourceError` naming the known ones, so a typo is reported instead of silently ignored.
    """
    base, sep, fragment = uri.partition("#")
    options = dict(known)
    if not sep or not fragment:
        return base, options
    for key, value in parse_qsl(fragment, keep_blank_values=True, strict_parsing=False):
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise SourceError(f"unknown option {key!r} in {mask_uri(uri)!r}; options for this source: {names}")
        options[key] = value
    return base, options


def positive_float(options: dict[str, str], key: str, uri: str, maximum: float) -> float:
    """Option ``key`` as a number above zero and at most ``maximum``, or a `SourceError` that names it.

    The bound keeps out ``inf`` and its like: an infinite rate makes every frame's interval zero, an
    infinite time-out a reader that never gives up and never exits.
    """
    try:
        value = float(options[key])
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise SourceError(
            f"option {key}={options[key]!r} in {mask_uri(uri)!r} must be a number above 0 and at most {maximum:g}"
        )
    return value
