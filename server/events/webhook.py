"""Webhooks: each event POSTed as JSON to a URL, signed, retried with backoff, one at a time in order.

A webhook gets the events its filters let through (``types``, ``streams``, ``zones``, ``lines``: `wanted`),
and no other is counted for it: on Zapier, Make or n8n's cloud each POST is a billed task.

The receiver checks ``X-Segcast-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body under the
shared secret (GitHub's scheme, so existing verifiers work); it signs no time, so a captured delivery
verifies forever: receivers refuse stale bodies by their ``time`` and repeats by ``event_id``.
``X-Segcast-Delivery`` is the event's ``event_id`` (`OutEvent`), the same in each of its retries and in
the MQTT and history copies, so a receiver that answered too late to be heard can tell a retry from a
new event. A delivery that times out (``timeout_s``), cannot connect or gets a 5xx or 429 is retried up
to ``retries`` times (`Backoff`): after doubling waits while the receiver gives no answer, after the first
wait each time where it answered (it is up), or as long as its Retry-After asks (at most `BACKOFF_MAX_S`,
and that quiet holds for the next event too). Each event starts afresh: one event a receiver keeps
failing costs its own retries, never a wait for the events after it. Deliveries are serial, one event at
a time, so a receiver slower than ``timeout_s`` costs each event its attempts' time-outs: ``timeout_s``
must cover the receiver's slowest answer. An event older than ``max_event_age_s`` by the time it could be
sent is dropped and counted (`Tally.too_old`), as MQTT's are.

A retried attempt is a warning, the first for its reason at once and the others for it at most once a
while with the count since (`Tally.retrying`), so a receiver that fails now and then costs a few lines a
minute, not a line an event; only an event given up on is an error, logged once and then, while the same
failure goes on, at most once a while with the events lost since (`Tally.fail`). A 4xx other than 429
means the receiver refuses the event, so it is not retried. A redirect is not followed (aiohttp would
turn the POST into a GET without its body, and a 2xx to that would count as delivered): it fails like a
refusal, naming where it points so the URL can be corrected. While a URL is down its queue fills and
further events are dropped and counted: they never pile up in memory or delay others.

Logs, /metrics and the API call a webhook by its ``name``, or show its URL as `shown_url` does, since
webhook URLs carry their secret in their path or query (Home Assistant's webhook id, Slack's and
Discord's tokens, ``?token=``); a failure is said in words with what to check (`connection_failure`), and
the events given up on are named with their type and ``event_id`` in a warning (`GiveUpLog`), so they can
be found in the history (``GET /api/events?event_id=``), where a receiver that needs them fetches them:
nothing sends them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import aiohttp

from server.events.config import WebhookSettings
from server.events.counts import Counts
from server.events.sink import (
    DROP_LOG_INTERVAL_S,
    RETRY_REASONS_MAX,
    Backoff,
    DeliveryTask,
    OutEvent,
    SinkHealth,
    Tally,
    retried_since,
)
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Segcast-Signature"
EVENT_HEADER = "X-Segcast-Event"
DELIVERY_HEADER = "X-Segcast-Delivery"
USER_AGENT = "segcast-webhook/1"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Segcast-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


#: A path segment shown as it is: lower-case words as a person names a path (``hooks``, ``segcast``,
#: ``api``, ``webhook``, ``door-events``) or a version (``v2``). Anything else (digits, capitals, a
#: run of letters longer than a word) may be a token or an id, and is shown as ``***``.
SHOWN_SEGMENT = re.compile(r"[a-z]{1,16}(?:[-_.][a-z]{1,16})*|v[0-9]{1,3}")
SHOWN_SEGMENT_MAX_CHARS = 40
HIDDEN_SEGMENT = "***"
#: getaddrinfo's "no such name" answers (the second is not on every platform).
NO_SUCH_HOST_ERRNOS = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without its user, path and query."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a Location header can say anything
        port = None
    host = parts.hostname or ""
    return f"{parts.scheme}://" + (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")


def shown_url(url: str) -> str:
    """``url`` as logs, /metrics and the API show it: ``scheme://host[:port]/path``, without its user
    and query, each path segment that may be a secret (`SHOWN_SEGMENT`) as ``***``.

    Webhook URLs often carry their secret: Home Assistant's webhook id is the last segment of its path
    (any text the person chose, lower-case words too), Slack's and Discord's tokens are in theirs,
    others take ``?token=``. So the last segment is never shown, and the others only where they are
    lower-case words, so that two webhooks on one host mostly read apart and a redirect says roughly
    where it points.
    """
    segments = urlsplit(url).path.split("/")
    if not any(segments):
        return _origin(url)
    last = max(i for i, part in enumerate(segments) if part)
    shown = (HIDDEN_SEGMENT if i == last else _shown_segment(part) for i, part in enumerate(segments))
    return _origin(url) + "/".join(shown)


def _shown_segment(part: str) -> str:
    shown = not part or (len(part) <= SHOWN_SEGMENT_MAX_CHARS and SHOWN_SEGMENT.fullmatch(part) is not None)
    return part if shown else HIDDEN_SEGMENT


def retry_after_s(value: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` header asks for: seconds, or an HTTP date (``now`` being Unix time).

    None when there is no header or it says neither; a date in the past asks for no wait.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def webhook_names(hooks: Sequence[WebhookSettings]) -> list[str]:
    """The sinks' names, for logs, /metrics and the API, unique: ``webhook <name>`` where one is given (it
    stays whatever the other webhooks do), else ``webhook <url>`` as `shown_url` shows it.

    Webhooks without a name that still read the same (one URL twice, or paths told apart only by a
    hidden segment: two Home Assistant webhook ids) are told apart by their place in
    ``[[events.webhooks]]``, counted from 0 as config errors name them: ``webhook <url> [1]``; so
    deleting one renames the others: give each a ``name`` to keep its /metrics series.
    """
    shown = [hook.name if hook.name is not None else shown_url(hook.url) for hook in hooks]
    shared = Counter(url for url, hook in zip(shown, hooks, strict=True) if hook.name is None)
    return [f"webhook {url}" + (f" [{i}]" if shared[url] > 1 else "") for i, url in enumerate(shown)]


def wanted(settings: WebhookSettings, event: OutEvent) -> bool:
    """Whether ``event`` passes the webhook's filters: each one given must let it through.

    ``zones`` and ``lines`` let through the events of those zones (enter, exit, loiter) and lines
    (crossings): given both, an event of either. A track event is of no zone or line, so a webhook with
    either gets none.
    """
    if settings.types and event.data.get("type") not in settings.types:
        return False
    if settings.streams and event.stream_id not in settings.streams:
        return False
    if not settings.zones and not settings.lines:
        return True
    return event.data.get("zone") in settings.zones or event.data.get("line") in settings.lines


def tls_context(settings: WebhookSettings) -> ssl.SSLContext | bool:
    """What the POST checks the receiver's certificate with: ``ca_file``'s CAs where one is given (a private
    CA, a self-signed receiver), else the system's (True). No setting turns the check off: anyone on the
    way could then pose as the receiver and be sent every event."""
    if settings.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.ca_file))


def connection_failure(exc: aiohttp.ClientError) -> str:
    """What ``exc``, raised while POSTing, means, in words, and what to check.

    aiohttp's own text names its class, says ``ssl:default`` of a plain http URL too, and leaves the
    cause in brackets at its end.
    """
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if exc.os_error.errno in NO_SUCH_HOST_ERRNOS:
            return f"no such host: {exc.host} (check the host name in url)"
        return f"cannot look up {exc.host}: {exc.strerror} (check this machine's DNS)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS failed: the certificate of {_address(exc)} was not accepted: {exc.certificate_error} "
            "(check the certificate the receiver sends, and that url names the host it is for)"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return (
            f"TLS failed with {_address(exc)}: {exc.strerror} "
            "(check that the receiver speaks https on that port, or use http:// in url)"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {_address(exc)} (check that the receiver runs and listens on that port)"
        return f"cannot connect to {_address(exc)}: {exc.strerror} (check the address in url, and the network)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering (check its log)"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"the connection failed while sending: {exc.strerror or exc} (check the receiver's log)"
    return f"cannot deliver: {exc}" if str(exc) else f"cannot deliver: {exc!r}"


def _address(exc: aiohttp.ClientConnectorError) -> str:
    """``host:port`` of the connection ``exc`` is about, an IPv6 address in brackets."""
    return (f"[{exc.host}]" if ":" in exc.host else exc.host) + f":{exc.port}"


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect from ``url`` points, for `_Refused`'s text: its query left out, and said so."""
    target = urljoin(url, location)
    there, here = urlsplit(target), urlsplit(url)
    if (there.path, there.query) == (here.path, here.query):
        return f"{_origin(target)}, the same path" + (" and query" if there.query else "")
    return shown_url(target) + (", its query left out" if there.query else "")


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


class _Refused(Exception):
    """The receiver answered with a status that retrying will not change."""


class GiveUpLog:
    """The warnings that name the events a webhook gave up on, so that they can be found in the history.

    The first for a reason is told at once, naming its event by type and ``event_id``; the others given up
    for that reason within `DROP_LOG_INTERVAL_S` after it are counted, and told in one line naming the
    latest: the first after the window, or the first delivery after it, or at shutdown. So a receiver that
    refuses every event (a 404 from a flow that is not listening) costs a line a window, not one an event,
    and the events between the first and the latest are found in the history by their time.
    """

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        """``clock``: monotonic seconds, for the quiet windows."""
        self._name = name
        self._clock = clock
        self._counts: dict[str, ThrottledCount] = {}  # by reason, at most `RETRY_REASONS_MAX` of them
        self._latest: dict[str, OutEvent] = {}  # the latest event given up for each reason

    def given_up(self, event: OutEvent, reason: str) -> None:
        self._latest[reason] = event
        count = self._counts.get(reason)
        if count is None:
            if len(self._counts) >= RETRY_REASONS_MAX:  # their text comes from errors: the oldest goes
                oldest = next(iter(self._counts))
                self._tell(oldest, self._counts.pop(oldest).take())
                del self._latest[oldest]
            count = self._counts[reason] = ThrottledCount(DROP_LOG_INTERVAL_S)
        self._tell(reason, count.add(1, self._clock()))

    def due(self) -> None:
        """Tell the events of the windows that are over: an event was delivered, the refusals may have ended."""
        now = self._clock()
        for reason, count in self._counts.items():
            self._tell(reason, count.due(now))

    def take(self) -> None:
        """At shutdown: tell every event no line has told yet."""
        for reason, count in self._counts.items():
            self._tell(reason, count.take())

    def _tell(self, reason: str, count: int) -> None:
        if not count:
            return
        event = self._latest[reason]
        if count == 1:
            log.warning(
                "[%s] %s: %s; gave up on the %s event with event_id %s",
                event.stream_id,
                self._name,
                reason,
                event.data.get("type"),
                event.event_id,
            )
            return
        log.warning(
            "[%s] %s: %s; gave up on %d events since this was last logged, the latest the %s event with event_id %s",
            event.stream_id,
            self._name,
            reason,
            count,
            event.data.get("type"),
            event.event_id,
        )


class WebhookSink:
    #: Webhooks send the event's JSON only.
    snapshots = False

    def __init__(
        self,
        settings: WebhookSettings,
        name: str,
        backoff_first_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``name`` as `webhook_names` makes it: it must show the URL only as `shown_url` does.
        ``clock``: monotonic seconds, for the backoff and the log's quiet windows (`Tally`); ``sleep``: how
        the backoff's waits are waited, so that a test can count them without taking their time."""
        self.settings = settings
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._tally = Tally(self.name, log, clock)
        self._give_ups = GiveUpLog(self.name, clock)
        self._queue: asyncio.Queue[OutEvent] = asyncio.Queue(settings.queue)
        self.backoff = Backoff(backoff_first_s)
        self._tls = tls_context(settings)
        self._in_flight: OutEvent | None = None  # taken from the queue, not yet delivered or given up on
        self._delivery = DeliveryTask(self._run, self.name)

    def offer(self, event: OutEvent) -> None:
        """Queue ``event`` if the webhook's filters let it through (`wanted`); one they keep out is not counted.

        A full queue drops the new event and keeps the older ones: those are the first to outlive
        ``max_event_age_s``, and are dropped then, when they could be sent.
        """
        if not wanted(self.settings, event):
            return
        self._tally.offer()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._tally.drop(event)

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        """Webhooks carry events only; counts are polled (API, /metrics) or subscribed to (MQTT)."""

    def forget_stream(self, stream_id: str) -> None:
        """Webhooks keep nothing per stream."""

    async def start(self) -> None:
        self._delivery.start()

    async def stop(self) -> None:
        await self._delivery.drain(self._queue, self._tally)
        await self._delivery.stop()
        self._give_ups.take()
        self._tally.lose_at_shutdown(self._queue.qsize() + (self._in_flight is not None))

    def health(self) -> SinkHealth:
        return self._tally.health()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}) as session:
            while True:
                event = await self._queue.get()
                self._in_flight = event
                try:
                    if not self._tally.too_old(event, time.time(), self.settings.max_event_age_s):
                        await self._deliver(session, event)
                except Exception as exc:  # a bug costs its event, not the webhook
                    log.exception(
                        "[%s] %s: could not deliver a %s event", event.stream_id, self.name, event.data.get("type")
                    )
                    self._tally.fail(f"internal error: {exc!r}", lost=1)
                finally:
                    self._queue.task_done()
                self.backoff.settled()  # the next event is tried at once, unless the receiver asked for quiet
                self._in_flight = None  # not when cancelled: `stop` counts that one lost

    async def _deliver(self, session: aiohttp.ClientSession, event: OutEvent) -> None:
        body = json.dumps(event.message, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: str(event.data.get("type", "")),
            DELIVERY_HEADER: event.event_id,  # one per event, not per attempt: the body's event_id
        }
        if self.settings.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, body)
        for attempt in range(self.settings.retries + 1):
            if wait_s := self.backoff.wait_s(self._clock()):
                await self._sleep(wait_s)
            try:
                reason = await self._attempt(session, body, headers)
            except _Refused as exc:
                self._give_ups.given_up(event, f"{exc}; not retried")
                self._tally.fail(f"{exc}; not retried", lost=1)
                return
            if reason is None:
                return
            attempts = self.settings.retries + 1
            if attempt + 1 < attempts:
                self._retrying(event, reason, attempt + 1, attempts)
                continue
            self._give_ups.given_up(event, f"{reason} on attempt {attempts} of {attempts}")
            # One reason for every event lost to it: a receiver that keeps failing is an error once, then
            # once a while with the events lost since (`Tally.fail`), not once for every event.
            self._tally.fail(f"{reason}; an event given up after {_attempts(attempts)}", lost=1)

    def _retrying(self, event: OutEvent, reason: str, attempt: int, attempts: int) -> None:
        """An attempt failed and will be retried: a warning, since the event may still get through
        (an error is for an event given up on), and only where `Tally.retrying` says one is due, with
        the attempts retried for the same reason since the last; the sink is failing meanwhile."""
        count = self._tally.retrying(reason)
        if not count:
            return
        since = f" ({retried_since(count - 1)})" if count > 1 else ""
        log.warning(
            "[%s] %s: %s on attempt %d of %d; retrying%s", event.stream_id, self.name, reason, attempt, attempts, since
        )

    async def _attempt(self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> str | None:
        """POST once: None when delivered, else why, when retrying may help (and `backoff` says when).

        Raises `_Refused` for an answer that retrying will not change.
        """
        asked_s = None
        answered = False
        try:
            async with session.post(
                self.settings.url, data=body, headers=headers, allow_redirects=False, ssl=self._tls
            ) as response:
                if response.status < 300:
                    self._tally.ok()
                    self._give_ups.due()
                    return None
                answered = True
                reason = f"answered HTTP {response.status}"
                if response.status < 400:
                    location = response.headers.get("Location")
                    where = f" to {_redirect_target(self.settings.url, location)}" if location else ""
                    raise _Refused(f"{reason}, a redirect{where} (not followed: set url to where it points)")
                if response.status < 500 and response.status != 429:
                    raise _Refused(reason)
                asked_s = retry_after_s(response.headers.get("Retry-After"), time.time())
                if asked_s is not None:
                    reason += " with Retry-After"
        except TimeoutError:  # aiohttp's own time-outs are TimeoutErrors too
            reason = (
                f"timed out: no answer within timeout_s = {self.settings.timeout_s:g} s (check that the receiver "
                "can be reached and answers within it, or raise timeout_s)"
            )
        except aiohttp.ClientError as exc:
            reason = connection_failure(exc)
        self.backoff.failed(self._clock(), asked_s, answered)
        return reason
