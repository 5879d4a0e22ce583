"""The one shape of an HTTP error segcast answers with: ``{"error": "<what is wrong and the fix>"}``."""

from __future__ import annotations

import json

from aiohttp import web


def error(kind: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    """An HTTP error of ``kind`` with a JSON body naming what is wrong; raise it from a handler."""
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=headers or None)
