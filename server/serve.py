"""Running the server for `Settings`, in the order a person at the terminal needs.

The port is taken first (a port in use is said before any waiting), then the model is loaded, and
only when the server really accepts connections does it say ``listening on <url>``; when it has
stopped, ``stopped``. A port taken all the same by the time it listens (by a program that could bind
it while segcast held it, as an older segcast could) is said as one taken at start is. A server whose
inference thread ended on its own stops itself the same clean way, then exits with `EXIT_INFERENCE_ENDED`.
Everything heavy (aiohttp, PyTorch, the pipeline) is imported from here, after the CLI has printed its
first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from typing import NoReturn

from aiohttp import web

from server.app import create_app
from server.cli import EXIT_INTERRUPTED, EXIT_STOP_OVERRAN
from server.config import Settings
from server.config_values import ConfigError
from server.http.access.tokens import AuthConfigError
from server.http.network.connections import ConnectionLimitingLoop, ConnectionLimits, raise_open_files_limit
from server.http.network.listen import ListenError, bind, cannot_listen, listening_message, ready_to_listen
from server.http.network.serving import server_options
from server.inference.models import ModelError
from server.sources.uri import mask_uri

#: Everything that stops the start with one line; the message names the flag or key to change.
STARTUP_ERRORS = (ConfigError, ModelError, AuthConfigError, ListenError)
ACCESS_LOGGER = "aiohttp.access"
#: What stops a running server cleanly: Ctrl-C, a service manager, and a closed terminal or ssh session
#: (not on Windows, which has no SIGHUP).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
#: How long a stop may take once asked for. Each of its parts has a limit of its own (viewers closed,
#: requests under way, WebRTC peers closed, readers, the inference thread and the encoder joined, the
#: event history written: about 50 s if each took all of it), so only a stop stuck past them reaches
#: it; it is below a service manager's own limit (systemd's 90 s), so segcast ends itself first, saying so.
STOP_LIMIT_S = 60.0
#: The exit status of a server that stopped itself because its inference thread ended on its own
#: (`InferenceWorker.ended`): no frame would be inferred again, and a status other than 0 is what makes a
#: service manager start it anew (systemd's ``Restart=on-failure``, docs/service.md).
EXIT_INFERENCE_ENDED = 3


def serve(
    settings: Settings,
    context: ssl.SSLContext | None,
    end_process: Callable[[int], NoReturn],
    *,
    access_log: bool = False,
) -> None:
    """Serve until one of `STOP_SIGNALS`, then say that it stopped; raises one of `STARTUP_ERRORS` if
    the server cannot start.

    ``end_process`` ends the process with a status, for a stop that is cut short (`StopSignals`), and
    with `EXIT_INFERENCE_ENDED` once a stop the server made itself, its inference thread ended, is over.
    ``access_log`` writes a line per HTTP request (at INFO, whatever the log level): off by default,
    since a dashboard polling snapshots would bury everything else.
    """
    listening = listening_message(settings.host, settings.port, context is not None)
    sockets = bind(settings.host, settings.port)
    started = False  # the app is up (the model loaded): an OSError from then until it listens is the listen's
    listens = False
    inference_ended = False  # the server stopped itself for it: the process must not end with 0

    async def about_to_listen(_app: web.Application) -> None:
        nonlocal started
        ready_to_listen(sockets)
        started = True

    def said_listening(_line: str) -> None:
        nonlocal listens
        listens = True
        say(f"segcast: {listening}")

    def stop_for_inference(reason: str) -> None:
        nonlocal inference_ended
        if stops.stopping:  # asked to already: it goes on as asked, with its status
            return
        inference_ended = True
        stops.begin(
            f"segcast: stopping, as no frame can be inferred any more ({reason}); it exits with status "
            f"{EXIT_INFERENCE_ENDED} for a service manager to start it again"
        )

    def inference_ends(reason: str) -> None:  # from an inference listener: the stop in a callback of its own
        loop.call_soon(stop_for_inference, reason)

    try:
        # Refuses some settings at once (a public --host without tokens): no 'loading model'.
        app = create_app(settings, on_inference_ended=inference_ends)
        if access_log:
            logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
        # Connections are limited as they are accepted, before any token is read: anyone who can reach
        # the port could otherwise open files until no one, the admin included, gets an answer.
        limits = ConnectionLimits.for_open_files(
            raise_open_files_limit(), settings.viewer_limits.max_viewers_per_address
        )
        loop = ConnectionLimitingLoop(limits)
        stops = StopSignals(loop, end_process)
        stops.install()
        # Said once a stop signal stops the server cleanly: from here on, its last line is ``stopped`` (README).
        say(f"segcast: loading model {mask_uri(settings.model)}")  # a Triton URL may carry a password
        app.on_startup.append(about_to_listen)  # the last step before run_app listens: the model is loaded
        # run_app calls `print` once every socket accepts connections, after the model has loaded.
        try:
            web.run_app(
                app,
                sock=sockets,
                ssl_context=context,
                access_log=logging.getLogger(ACCESS_LOGGER) if access_log else None,
                print=said_listening,
                loop=loop,
                handle_signals=False,  # StopSignals' instead
                **server_options(),
            )
        except OSError as exc:
            if not started or listens:
                raise
            raise cannot_listen(settings.host, settings.port, exc) from None  # run_app has stopped the app
    finally:
        for sock in sockets:
            sock.close()
    # run_app returns once the shutdown is over; without a word the log just ended, as after a crash.
    say("segcast: stopped")
    if inference_ended:
        end_process(EXIT_INFERENCE_ENDED)


class StopSignals:
    """What `STOP_SIGNALS` do to a running server: the first begins the clean stop (viewers closed,
    readers and threads joined, the event outputs flushed), a second while it runs only says so, and a
    third ends the process at once.

    aiohttp's own handlers raised its `GracefulExit` again for a second signal, from inside the stop:
    the process ended with status 1 and no word, the stop cut off where it was. SIGHUP is left alone
    where it is ignored (``nohup segcast ...``: asked to outlive its terminal).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, end_process: Callable[[int], NoReturn], limit_s: float = STOP_LIMIT_S
    ) -> None:
        self._loop = loop
        self._end_process = end_process
        self._limit_s = limit_s
        self._received = 0

    def install(self) -> None:
        """Handle the signals on ``loop`` (as aiohttp does), until it is closed."""
        for signum in STOP_SIGNALS:
            if signum == getattr(signal, "SIGHUP", None) and signal.getsignal(signum) is signal.SIG_IGN:
                continue
            try:
                self._loop.add_signal_handler(signum, self.received)
            except NotImplementedError:  # Windows' event loops: Ctrl-C reaches run_app as KeyboardInterrupt
                return

    def received(self) -> None:
        """A stop signal arrived; raises `GracefulExit` for the first, which makes ``run_app`` stop the server."""
        self._received += 1
        if self._received == 1:
            self.begin("segcast: stopping")
        if self._received == 2:
            say(
                f"segcast: already stopping (within {self._limit_s:.0f} s); Ctrl-C or a signal once more stops "
                "it at once, without closing the streams or writing the last events"
            )
            return
        say("segcast: stopping at once, as asked again: the streams are not closed, the last events not written")
        self._end_process(EXIT_INTERRUPTED)

    @property
    def stopping(self) -> bool:
        """Whether the stop has begun: a signal, or the server itself (`begin`), asked for it."""
        return self._received > 0

    def begin(self, line: str) -> NoReturn:
        """Begin the clean stop saying ``line``, as the first signal does (and the signals after it count
        as the second and third): raises `GracefulExit`, which makes ``run_app`` stop the server. For a
        stop the server asks for itself, while `stopping` is False."""
        self._received = max(self._received, 1)
        self._loop.call_later(self._limit_s, self._overran)
        say(line)
        raise web.GracefulExit()

    def _overran(self) -> None:
        say(f"segcast: the stop did not end within {self._limit_s:.0f} s; stopping at once")
        self._end_process(EXIT_STOP_OVERRAN)


def say(line: str) -> None:
    """``line`` on stdout in one write: the pipeline's threads are logging by now, and a log line must
    not land between the text and its newline (``print`` writes them separately).

    A stdout that is gone (a closed terminal, a ``| tee`` ended by the same Ctrl-C) loses the line and
    nothing else: the stop it would have told of goes on."""
    if sys.stdout is None:  # started with stdout closed (``>&-``): as `print` does, nothing is said
        return
    with contextlib.suppress(OSError):
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()
