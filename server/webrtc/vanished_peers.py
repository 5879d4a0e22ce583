"""aiortc's own tasks that fail because their peer vanished, logged as what they are.

A browser that crashes or loses its network leaves aiortc's transports mid-send: a task of aiortc's
(the SCTP transport's ``_transmit``, a connection's ICE start) then fails with ``ConnectionError`` or
aiortc's ``InvalidStateError``, and since nothing awaits those tasks, asyncio logs "Task exception was
never retrieved" at ERROR with a full traceback. The peer registry notices the peer gone and frees it
all the same (`server.webrtc.peers`), so that ERROR is a false alarm for anyone alerting on ERROR
lines. This loop exception handler logs those failures at DEBUG and hands everything else, aiortc's
other failures included, to the handler that was there before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiortc
from aiortc.exceptions import InvalidStateError

log = logging.getLogger(__name__)

#: The failures of a send or a connect whose peer is gone.
PEER_GONE = (ConnectionError, InvalidStateError)
_AIORTC_DIR = Path(aiortc.__file__).parent

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def quiet_vanished_peers(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Install the handler on ``loop``; returns what puts the previous one back."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if isinstance(exception, PEER_GONE) and _in_aiortc(context.get("future")):
            log.debug("WebRTC: an aiortc task ended as its peer went (%r)", exception)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    return lambda: loop.set_exception_handler(previous)


def _in_aiortc(future: object) -> bool:
    """Whether ``future`` is a task running a coroutine of aiortc's own code."""
    get_coro = getattr(future, "get_coro", None)
    code = getattr(get_coro() if get_coro is not None else None, "cr_code", None)
    return code is not None and Path(code.co_filename).is_relative_to(_AIORTC_DIR)
