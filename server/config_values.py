"""Reading one value of the config file: each reader takes a key of a TOML table and gives its value typed
and in range, or a `ConfigError` naming the key and what it expects.

Paths the file gives are taken from the file's own folder (``tls_cert``, ``media_dirs``, a stream's ``uri``
that is a file path, ``[model] name`` where such a file is there). Its own module so that `server.config`
says what the settings are and how the file's tables become them, while what each kind of value may be is
said once, here; `ConfigError` lives here as every reader raises it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from server.events.config import resolved_path, shown, shown_as_number
from server.sources.file import split_file_uri

#: A source of CSP ``frame-ancestors`` that a browser can match (CSP 3's grammar): ``*``, ``'self'``, a
#: scheme (``https:``), or ``[scheme://]host[:port][/path]`` with ``*.`` or ``*`` for the host, ``*``
#: for the port. Anything else a browser ignores; a space, ``;`` or ``,`` would start another source or
#: directive, and a line break could not go into the header at all.
CSP_SOURCE_PATTERN = re.compile(
    r"""\A(?:
        \* | 'self' | [A-Za-z][A-Za-z0-9+.-]*:
        | (?:[A-Za-z][A-Za-z0-9+.-]*://)?
          (?:\* | (?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?)
          (?::(?:[0-9]+|\*))?
          (?:/[A-Za-z0-9._~%!$&'()*+=:@/-]*)?
    )\Z""",
    re.VERBOSE,
)


class ConfigError(ValueError):
    """A setting is wrong; the message names the flag or key and the fix."""


def read_table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a [{key}] table, got {shown(value)}")
    return value


def read_text(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected text, got {shown(value)}")
    return value


def read_bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {shown(value)}")
    return value


def read_int(table: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected a whole number from {low} to {high}, got {shown_as_number(value)}")
    return value


def read_optional_path(table: Mapping[str, Any], key: str, config: Path, where: str) -> Path | None:
    """A file named in the config file, relative to the file's own folder."""
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a file path, got {shown(value)}")
    return path_from_config(value, config, f"{where}.{key}")


def path_from_config(value: str, config: Path, where: str) -> Path:
    """``value`` as an absolute path, relative to the config file's folder (see `resolved_path`)."""
    try:
        return resolved_path(value, config.parent, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def read_embed_origins(server: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """``embed_origins``, each a source a browser matches: it goes into every page's CSP header as it is."""
    origins = read_strings(server, "embed_origins", where)
    for index, origin in enumerate(origins):
        if not CSP_SOURCE_PATTERN.match(origin):
            raise ConfigError(
                f"{where}.embed_origins[{index}]: {origin!r} is not an origin a browser can match: expected "
                'scheme://host[:port] ("https://grafana.example.com", "https://*.example.com"), "\'self\'" '
                "or \"*\", one per entry, with no spaces, ';' or ',' (an international name in its xn-- form)"
            )
    return tuple(origins)


def read_tokens(auth: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """Access tokens as given: one that starts or ends with white space could never match, as a
    request's token is read without it (a copy-paste slip that would lock its holder out unseen)."""
    tokens = read_strings(auth, key, where)
    for index, token in enumerate(tokens):
        if token != token.strip():
            raise ConfigError(
                f"{where}.{key}[{index}]: the token starts or ends with a space, tab or line break, so no "
                "request could ever match it: remove them"
            )
    return tuple(tokens)


def read_strings(table: Mapping[str, Any], key: str, where: str) -> list[str]:
    """A list of strings, none empty: an empty ``media_dirs`` entry would be the config file's whole folder, and
    an empty token, origin, scheme or network is a slip."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of non-empty strings, got {shown(value)}")
    return value


def file_relative_uri(uri: str, config: Path, where: str) -> str:
    """``uri`` with a relative file path in it taken from the config file's folder, as other paths are.

    A plain path (``clip.mp4``, ``videos/a.mp4#rate=max``) and a ``file:`` URI without a leading
    ``/`` (``file:clip.mp4``) are; anything else (a camera's URL, ``scene:``, an absolute path) is
    returned as it is. A symlink in the path is kept (see `_absolute`): ``latest.mp4``, a link
    rotated to each day's recording, is opened where it points then, as an absolute path to it is.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:  # not a URI: its stream fails and says why
        return uri
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc or not parts.path or parts.path.startswith("/"):
            return uri
        path = _absolute(unquote(parts.path), config, where)
        return urlunsplit(("file", "", quote(str(path)), parts.query, parts.fragment))
    if scheme or Path(uri).is_absolute():  # a Windows drive's letter reads as a scheme: absolute too
        return uri
    # What follows a '#' is the source's options where `split_file_uri` reads them so, else part of
    # the file's name: the source's own rule, which looks at no file.
    path, options = split_file_uri(uri, is_url=False)
    if options is None:
        return str(_absolute(uri, config, where))
    return f"{_absolute(str(path), config, where)}#{options}"


def local_model(name: str, config: Path) -> str:
    """``name`` as the file or folder of that name beside the config file, if there is one; else as it is."""
    if "://" in name or not name.strip() or Path(name).is_absolute():
        return name
    try:
        local = _absolute(name, config, "model.name")
    except ConfigError:
        return name
    return str(local) if local.exists() else name


def _absolute(value: str, config: Path, where: str) -> Path:
    """``value`` as an absolute path from the config file's folder, its symlinks not followed.

    Unlike `path_from_config`, a link is left for the source to follow each time it opens the path, and two
    names of one file stay two paths. ``..`` is taken as written (``a/../b`` is ``b``).
    """
    if "\x00" in value:
        raise ConfigError(f"{where}: {value!r:.60} is not a usable path (it holds a NUL character)")
    return Path(os.path.abspath(os.path.join(config.parent, os.path.expanduser(value))))
