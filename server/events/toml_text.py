"""TOML strings as segcast writes them: in the config file it saves, and in the fixes its errors suggest.

Apart from `server.events.config_toml` so the config's parsing, which suggests ``key = "value"``
in its errors, and the writing, which needs the parsed settings, do not import each other.
"""

from __future__ import annotations

import re

#: What TOML's basic strings must not hold as they are: the quote, the backslash and control characters.
TOML_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')
#: A key TOML takes as it is; any other is written as a string (a class filter's ``"traffic light"``).
TOML_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
TOML_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, written as it is but for what TOML must have escaped.

    Not ``json.dumps``: its ASCII output writes a character beyond U+FFFF (an emoji in a password)
    as a pair of surrogate escapes, which TOML refuses, so the file saved would not load again.
    """
    return '"' + TOML_ESCAPED.sub(_toml_escape, text) + '"'


def toml_key(key: str) -> str:
    """``key`` as a TOML key: bare where TOML allows it, else a basic string."""
    return key if TOML_BARE_KEY.match(key) else toml_string(key)


def _toml_escape(match: re.Match[str]) -> str:
    char = match.group()
    return TOML_SHORT_ESCAPES.get(char) or f"\\u{ord(char):04X}"
