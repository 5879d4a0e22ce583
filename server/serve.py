"""Running the server for `Settings`, in the order a person at the terminal needs.

The port is taken first (a port in use is said before any waiting), then the model is loaded, and
only when the server really accepts connections does it say ``listening on <url>``. Everything heavy
(aiohttp, PyTorch, the pipeline) is imported from here, after the CLI has printed its first line.
"""

from __future__ import annotations

import logging
import ssl
import sys

from aiohttp import web

from server.app import create_app
from server.config import ConfigError, Settings
from server.http.access.auth import AuthConfigError
from server.http.network.connections import ConnectionLimitingLoop, ConnectionLimits, raise_open_files_limit
from server.http.network.listen import ListenError, bind, listening_message
from server.http.network.serving import server_options
from server.inference.models import ModelError
from server.sources.uri import mask_uri

#: Everything that stops the start with one line; the message names the flag or key to change.
STARTUP_ERRORS = (ConfigError, ModelError, AuthConfigError, ListenError)
ACCESS_LOGGER = "aiohttp.access"

log = logging.getLogger(__name__)


def serve(settings: Settings, context: ssl.SSLContext | None, *, access_log: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then log that it stopped; raises one of `STARTUP_ERRORS` if the
    server cannot start.

    ``access_log`` writes a line per HTTP request (at INFO, whatever the log level): off by default,
    since a dashboard polling snapshots would bury everything else.
    """
    listening = listening_message(settings.host, settings.port, context is not None)
    sockets = bind(settings.host, settings.port)
    try:
        say(f"segcast: loading model {mask_uri(settings.model)}")  # a Triton URL may carry a password
        app = create_app(settings)
        if access_log:
            logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
        # Connections are limited as they are accepted, before any token is read: anyone who can reach
        # the port could otherwise open files until no one, the admin included, gets an answer.
        limits = ConnectionLimits.for_open_files(
            raise_open_files_limit(), settings.viewer_limits.max_viewers_per_address
        )
        # run_app turns SIGINT and SIGTERM into a graceful exit: viewers closed, readers and threads joined.
        # It calls `print` once every socket accepts connections, after the model has loaded.
        web.run_app(
            app,
            sock=sockets,
            ssl_context=context,
            access_log=logging.getLogger(ACCESS_LOGGER) if access_log else None,
            print=lambda _: say(f"segcast: {listening}"),
            loop=ConnectionLimitingLoop(limits),
            **server_options(),
        )
    finally:
        for sock in sockets:
            sock.close()
    # run_app returns once the shutdown is over; without a word the log just ended, as after a crash.
    log.info("segcast stopped")


def say(line: str) -> None:
    """``line`` on stdout in one write: the pipeline's threads are logging by now, and a log line must
    not land between the text and its newline (``print`` writes them separately)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()
