"""Webhooks: each event POSTed as JSON to a URL, signed, retried with backoff, one at a time in order.

The receiver checks ``X-Segcast-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body under the
shared secret (GitHub's scheme, so existing verifiers work); it signs no time, so a captured delivery
verifies forever: receivers refuse stale bodies by their ``time`` and repeats by ``event_id``.
``X-Segcast-Delivery`` is the event's ``event_id`` (`OutEvent`), the same in each of its retries and in
the MQTT and history copies, so a receiver that answered too late to be heard can tell a retry from a
new event. A delivery that times out (``timeout_s``), cannot connect or gets a 5xx or 429 is retried up
to ``retries`` times with doubling waits, or as long as the answer's Retry-After asks (at most
`BACKOFF_MAX_S`); the wait goes on to the next event while the receiver keeps failing, so a receiver
that is down or rate-limiting is not hit at full speed by each new event. A retried attempt is a
warning, the first for its reason at once and the others for it at most once a while with the count
since (`Tally.retrying`), so a receiver that fails now and then costs a few lines a minute, not a line
an event; only an event given up on is an error, logged once and then, while the same failure goes on,
at most once a while with the events lost since (`Tally.fail`). A 4xx other than 429 means the receiver
refuses the event, so it is not retried. A redirect is not followed (aiohttp would turn the POST into a
GET without its body, and a 2xx to that would count as delivered): it fails like a refusal, naming where
it points so the URL can be corrected. While a URL is down its queue fills and further events are
dropped and counted: they never pile up in memory or delay others.

Logs, /metrics and the API show a URL as `shown_url` does, since webhook URLs carry their secret in
their path or query (Home Assistant's webhook id, Slack's and Discord's tokens, ``?token=``); a
failure is said in words with what to check (`connection_failure`), and each event given up on is
named with its type and ``event_id`` in a warning, so it can be found in the history (``GET
/api/events?event_id=``), where a receiver that needs it fetches it: nothing sends it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import aiohttp

from server.events.config import WebhookSettings
from server.events.counts import Counts
from server.events.sink import Backoff, DeliveryTask, OutEvent, SinkHealth, Tally, retried_since

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
    """The sinks' names, for logs, /metrics and the API: ``webhook <url>`` as `shown_url` shows it, unique.

    Webhooks that still read the same (one URL twice, or paths told apart only by a hidden segment:
    two Home Assistant webhook ids) are told apart by their place in ``[[events.webhooks]]``,
    counted from 0 as config errors name them: ``webhook <url> [1]``.
    """
    shown = [shown_url(hook.url) for hook in hooks]
    shared = Counter(shown)
    return [f"webhook {url}" + (f" [{i}]" if shared[url] > 1 else "") for i, url in enumerate(shown)]


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


class WebhookSink:
    #: Webhooks send the event's JSON only.
    snapshots = False

    def __init__(
        self,
        settings: WebhookSettings,
        name: str,
        backoff_first_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``name`` as `webhook_names` makes it: it must show the URL only as `shown_url` does.
        ``clock``: monotonic seconds, for the log's quiet windows (`Tally`)."""
        self.settings = settings
        self.name = name
        self._tally = Tally(self.name, log, clock)
        self._queue: asyncio.Queue[OutEvent] = asyncio.Queue(settings.queue)
        self.backoff = Backoff(backoff_first_s)
        self._in_flight: OutEvent | None = None  # taken from the queue, not yet delivered or given up on
        self._delivery = DeliveryTask(self._run, self.name)

    def offer(self, event: OutEvent) -> None:
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
                    await self._deliver(session, event)
                except Exception as exc:  # a bug costs its event, not the webhook
                    log.exception(
                        "[%s] %s: could not deliver a %s event", event.stream_id, self.name, event.data.get("type")
                    )
                    self._tally.fail(f"internal error: {exc!r}", lost=1)
                finally:
                    self._queue.task_done()
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
            if wait_s := self.backoff.wait_s(time.monotonic()):
                await asyncio.sleep(wait_s)
            try:
                reason = await self._attempt(session, body, headers)
            except _Refused as exc:
                self.backoff.reset()  # the receiver is up: the next event need not wait
                self._given_up(event, f"{exc}; not retried")
                self._tally.fail(f"{exc}; not retried", lost=1)
                return
            if reason is None:
                return
            attempts = self.settings.retries + 1
            if attempt + 1 < attempts:
                self._retrying(event, reason, attempt + 1, attempts)
                continue
            self._given_up(event, f"{reason} on attempt {attempts} of {attempts}")
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

    def _given_up(self, event: OutEvent, reason: str) -> None:
        """The event is lost to this webhook: a warning naming it, so it can be found in the history
        (by its ``event_id``), which is where a receiver gets it: it is not sent again. One for every event
        given up on, never throttled as the retries' lines are, since each names an event nothing else does;
        the error that the webhook fails is `Tally.fail`'s, once a while."""
        log.warning(
            "[%s] %s: %s; gave up on the %s event with event_id %s",
            event.stream_id,
            self.name,
            reason,
            event.data.get("type"),
            event.event_id,
        )

    async def _attempt(self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> str | None:
        """POST once: None when delivered, else why, when retrying may help (and `backoff` says when).

        Raises `_Refused` for an answer that retrying will not change.
        """
        asked_s = None
        try:
            async with session.post(self.settings.url, data=body, headers=headers, allow_redirects=False) as response:
                if response.status < 300:
                    self.backoff.reset()
                    self._tally.ok()
                    return None
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
        self.backoff.failed(time.monotonic(), asked_s)
        return reason
