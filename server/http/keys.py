"""The application's typed state (`web.AppKey`), in one module every route module can import.

The values are created by `server.app.create_app` and its cleanup context; nothing here is global
state, only the names under which one app keeps its own.
"""

from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from server.config import Settings
from server.delivery.hub import Hub
from server.delivery.viewer import Viewer
from server.http.network.serving import ViewerConnection
from server.streams import StreamManager

settings_key = web.AppKey("settings", Settings)
hub_key = web.AppKey("hub", Hub)
manager_key = web.AppKey("manager", StreamManager)
#: Open WebSockets with their connection, which shutdown cuts off if a polite close does not get through.
websockets_key = web.AppKey("websockets", weakref.WeakKeyDictionary[web.WebSocketResponse[bool], ViewerConnection])
#: Viewers that are not WebSockets (MJPEG responses): closed at shutdown so their handlers end.
http_viewers_key = web.AppKey("http_viewers", weakref.WeakSet[Viewer])
#: Serialises writes of the config file, so two API calls cannot interleave them.
config_lock_key = web.AppKey("config_lock", asyncio.Lock)
#: One lock per stream id, held by every change of it through the API (POST, PATCH, DELETE) from before
#: it reads the stream until it is made and saved: a PATCH merges its body over the stream's current
#: options, and nothing else the API does may replace them meanwhile (a change would be lost, or made
#: over a stream removed and added again while its new source was checked).
stream_changes_key = web.AppKey("stream_changes", weakref.WeakValueDictionary[str, asyncio.Lock])
#: Where stream changes run, and their saves to the config file: not the loop's default executor, which
#: encodes snapshots and stops the pipeline (`server.http.api.STREAM_CHANGE_THREADS`).
stream_change_executor_key = web.AppKey("stream_change_executor", ThreadPoolExecutor)
#: The secret of this process's stream ETags (`server.http.api.stream_etag`): random, so an ETag says
#: nothing about what it is made of (a camera's password is part of a stream's settings).
etag_secret_key = web.AppKey("etag_secret", bytes)
