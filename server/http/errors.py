"""The one shape of an HTTP error segcast answers with: ``{"error": "<what is wrong and the fix>"}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


def error(kind: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    """An HTTP error of ``kind`` with a JSON body naming what is wrong; raise it from a handler."""
    return detailed_error(kind, message, {}, headers)


def detailed_error(
    kind: type[web.HTTPException], message: str, details: Mapping[str, Any], headers: Mapping[str, str]
) -> web.HTTPException:
    """`error` with ``details`` in the body beside ``error``: what a client needs to carry on (a
    change that was made though the request failed says what the stream now is)."""
    body = {"error": message, **details}
    return kind(text=json.dumps(body), content_type="application/json", headers=headers or None)
