"""Reading source URIs: masking credentials and taking segcast's own options out of the fragment.

segcast's per-source options ride in the URI fragment (``rtsp://cam/live#transport=udp``) because the
fragment is the one part of a URL that is never sent to the camera: a camera's own query string
(``?channel=1&subtype=0``) passes through untouched, and no option name of ours can clash with it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from server.sources.base import SourceError

MASK = "***"

#: Query keys whose values are secrets: some cameras take credentials or tokens in the query string.
_SECRET_KEY = re.compile(r"pass|pwd|token|secret|key|auth|sig|credential", re.IGNORECASE)
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")


def mask_uri(uri: str) -> str:
    """``uri`` with its password and secret-looking query values replaced by ``***``.

    Safe on anything, including text that is not a URI at all, so every log line, API field and error
    message about a source can go through it.
    """
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", uri, count=1)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if not parts.query or not parts.netloc:
        return masked
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(_SECRET_KEY.search(key) for key, _ in pairs):
        return masked
    query = "&".join(
        f"{quote(key, safe='')}={MASK if _SECRET_KEY.search(key) else quote(value, safe='')}" for key, value in pairs
    )
    return urlunsplit(parts._replace(query=query))


def mask_text(text: str, uri: str) -> str:
    """``text`` (typically an FFmpeg error that quotes the URL) with ``uri``'s secrets masked."""
    masked = mask_uri(uri)
    if masked != uri:
        text = text.replace(uri, masked)
        password = _USERINFO.match(uri)
        if password and password["password"]:
            text = text.replace(password["password"], MASK)
    return text


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


def positive_float(options: dict[str, str], key: str, uri: str) -> float:
    """Option ``key`` as a number above zero, or a `SourceError` that names it."""
    try:
        value = float(options[key])
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SourceError(f"option {key}={options[key]!r} in {mask_uri(uri)!r} must be a number above 0")
    return value
