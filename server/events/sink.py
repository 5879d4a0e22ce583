"""The one shape every event output has, and the pieces they share: health, drop counting, backoff.

A sink is handed events on the event loop and must take them at once: `Sink.offer` only puts the
event in the sink's own bounded queue (or drops it, counted, when that is full). Delivering is the
sink's own task or thread, so a broker that is down or a webhook that hangs delays nobody but
itself. Events are plain JSON dicts (the protocol's event messages), so any kind the pipeline
emits, track or analytics, goes out without a sink knowing it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from server.events.counts import Counts
from server.events.snapshot import Picture
from server.frames import new_event_id
from server.log_throttle import ThrottledCount

#: At most one "queue full" line per sink per this many seconds, one for events lost again and again
#: to the same error, and one for attempts retried for the same reason; the lines say how many since
#: the last one, and /metrics counts each drop and loss.
DROP_LOG_INTERVAL_S = 30.0
#: The retry reasons a sink keeps a count for (`Tally.retrying`). The reasons of one destination are
#: few, but their text comes from errors: where more come, the oldest's count is told and forgotten.
RETRY_REASONS_MAX = 16
#: The reasons a sink keeps a count of events lost for, each with its own quiet window (`Tally.fail`):
#: more than the retry reasons, as the broker's name their stream (a topic its ACL refuses, per stream).
#: Where more come, the reason that failed least recently has its count told and is forgotten.
LOSS_REASONS_MAX = 64
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
#: At shutdown a network sink that is not failing (working, or yet to deliver its first event) delivers
#: what it has queued for up to this long; a failing one is not waited for: it would only retry into
#: the limit. What is left then, the event on its way included, is lost, logged and counted dropped.
#: Every output stops at once (`EventOutputs.stop`), so this is the wait for all of them, not each.
DRAIN_TIMEOUT_S = 2.0


class SinkState(enum.Enum):
    STARTING = "starting"
    OK = "ok"  # the last delivery (or connection) worked
    FAILING = "failing"  # the last delivery failed, or the destination cannot be reached; see last_error


@dataclass(frozen=True, slots=True)
class OutEvent:
    """An event on its way out: its protocol JSON, and for a sink that keeps snapshots, their pixels.

    It holds nothing else of the frame it happened on, so a full queue costs what its events carry,
    not a decoded frame each. ``capture_time`` is that frame's, for an event whose JSON has no time.

    ``event_id`` is the one in the event's JSON, drawn once as its frame was packed for the hub
    (`server.delivery.encode.make_packet`), before the viewers and the outputs were given it; every
    output sends or stores it (`message`): an event MQTT delivers twice, a webhook retried, a history
    row and the WebSocket's message are one event to whoever compares their ids. An event handed over
    without one (a frame not made by the encoder) has one drawn here. The JSON's ``id`` cannot be that
    key: it is the track's, and a track that enters a zone twice makes two ``zone_enter`` events with
    the same one.
    """

    data: Mapping[str, Any]
    stream_id: str
    capture_time: float
    picture: Picture | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id", str(self.data.get("event_id") or new_event_id()))

    @property
    def message(self) -> dict[str, Any]:
        """What every output sends or stores: the event's JSON with its ``event_id``."""
        return {**self.data, "event_id": self.event_id}


@dataclass(frozen=True, slots=True)
class SinkHealth:
    """What /metrics and the logs say about one sink; a copy, safe to read from any thread."""

    name: str
    state: SinkState
    delivered: int
    dropped: int
    failed: int
    last_error: str | None
    #: When (Unix seconds) ``last_error`` last happened; None before any. It is kept once the output
    #: works again (state ``ok``), so an error in the past shows as past, and when it was.
    last_error_at: float | None = None
    #: Upkeep an output failed at that cost no event (the history's deleting of old events, giving
    #: their space back, emptying its write-ahead log; its reads of a damaged file): the state stays
    #: ``ok``, as every event is stored, but a history that cannot delete will fill its disk, so this is
    #: what to alert on (a damaged file also makes the state ``failing``: it never heals by itself).
    upkeep_failures: int = 0
    #: Events waiting to be sent: in the queue, on their way, or being retried. A destination that is
    #: down fails one event at a time while the rest wait here, unseen in the other counters.
    queued: int = 0
    #: Why the latest attempt failed, retried or not; None once one works (and before any failed). What
    #: fails now: ``last_error`` keeps the error a failure was logged with while it goes on, so a receiver
    #: that answered 500 and now times out still shows the 500 there.
    last_attempt_error: str | None = None


class Sink(Protocol):
    """An event output. `offer`, `offer_counts` and `forget_stream` run on the loop and never wait; `start` and `stop`
    own the sink's task or thread, and `stop` returns once it has ended."""

    name: str
    #: Whether `offer` wants each event's `OutEvent.picture`; the others get events without one.
    snapshots: bool

    def offer(self, event: OutEvent) -> None: ...

    def offer_counts(self, stream_id: str, counts: Counts) -> None: ...

    def forget_stream(self, stream_id: str) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> SinkHealth: ...


class DeliveryTask:
    """The one task a network sink delivers from: made on the loop at `start`, cancelled and awaited at `stop`."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._run = run
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def drain(self, queue: asyncio.Queue[OutEvent], tally: Tally) -> None:
        """Let the task deliver what ``queue`` holds, before `stop` (see `DRAIN_TIMEOUT_S`).

        The task calls ``queue.task_done()`` for each event it has delivered or given up on. What is
        left is the sink's to count, after `stop`: the queue, and the event the task was cancelled on.
        """
        if self._task is not None and tally.state is not SinkState.FAILING:
            with suppress(TimeoutError):
                await asyncio.wait_for(queue.join(), DRAIN_TIMEOUT_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


@dataclass(slots=True)
class _Losses:
    """Events lost to one reason that no line has told, and until when (monotonic seconds) the reason's
    last line keeps it quiet: a window a delivery does not end (`Tally.fail`)."""

    untold: int = 0
    quiet_until: float = -math.inf


class Tally:
    """A sink's counters and state, and the lines its drops and failures make in the log.

    "Queue full" is logged at most once per `DROP_LOG_INTERVAL_S` (`ThrottledCount`), and so are
    events dropped for their age, attempts retried for one reason, and the error of each reason events
    are lost to, whether deliveries work between its failures or not (`fail`). What a window held is
    told by the first such line after it, by the first delivery after it (events lost to the error the
    log shows going on: by the first delivery, window or not, since that ends it), and at shutdown.
    "Working" ends only a failure the log has shown as an error, once, at the first delivery after its
    line: a failure only counted in a window is no news, nor an attempt retried and then delivered, or an
    output that fails for one topic or event type and works for the rest would say it with every event.

    Counters are plain ints written by one thread or task and read by others: a scrape may see a
    value one event old, never a torn one. Drops (on the loop) and deliveries (in the history's
    writer thread) both tell untold drops, so those are counted under a lock.

    What is queued is worked out, not counted: an event offered is queued (or on its way, or being
    retried) until it is delivered, failed or dropped, which every sink counts already; so each kind
    of sink, whatever its queue, reports it the same way and has no count of its own to get wrong.
    """

    def __init__(self, name: str, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds, for the quiet windows."""
        self.name = name
        self._log = log
        self._clock = clock
        self.state = SinkState.STARTING
        self.offered = 0  # on the loop, before the event is queued: never behind what it settles
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # Unix seconds
        self.last_attempt_error: str | None = None  # `SinkHealth.last_attempt_error`
        self._drops = ThrottledCount(DROP_LOG_INTERVAL_S)
        self._drops_lock = threading.Lock()
        self._latest_drop: OutEvent | None = None
        self._losses: dict[str, _Losses] = {}  # by reason, the one that failed least recently first (`fail`)
        #: The reason of the error line the log shows going on, until a delivery ends it with "working".
        self._announced: str | None = None
        self._retries: dict[str, ThrottledCount] = {}  # attempts retried, by reason (`retrying`)
        self._too_old = ThrottledCount(DROP_LOG_INTERVAL_S)  # events dropped for their age (`too_old`)
        self._latest_too_old: tuple[OutEvent, float, float] | None = None  # with its age and the limit

    def offer(self) -> None:
        """An event is offered to the sink: call before queueing it (a full queue then drops it)."""
        self.offered += 1

    def drop(self, event: OutEvent) -> None:
        self.dropped += 1
        with self._drops_lock:
            self._latest_drop = event
            self._tell_drops(self._drops.add(1, self._clock()))

    def ok(self, delivered: int = 1) -> None:
        """Record a delivery (or a connection) that worked; "working" is logged only when that ends a
        failure the log shows as an error: a first delivery is no news, nor one after attempts retried
        (`retrying`) or after failures only counted (`fail`), and a caller whose state did not change says
        nothing. Events lost to that error and not told yet are told just before, as a warning: they are
        past, no new error; so are the other reasons' whose windows are over."""
        if self._announced is not None:
            announced, self._announced = self._announced, None
            if (losses := self._losses.get(announced)) is not None:
                self._tell_losses(announced, losses)
            self._log.info("%s: working", self.name)
        self.state = SinkState.OK
        self.last_attempt_error = None
        self.delivered += delivered
        if self._drops.untold:  # read without the lock: a drop counted meanwhile is told next time
            with self._drops_lock:
                self._tell_drops(self._drops.due(self._clock()))
        if self._too_old.untold:
            self._tell_too_old(self._too_old.due(self._clock()))
        if any(retries.untold for retries in self._retries.values()):
            now = self._clock()
            for reason, retries in self._retries.items():
                self._tell_retries(reason, retries.due(now))
        if any(losses.untold for losses in self._losses.values()):
            now = self._clock()
            for reason, losses in self._losses.items():
                if losses.untold and now >= losses.quiet_until:
                    self._tell_losses(reason, losses, now)

    def fail(self, reason: str, lost: int = 0) -> None:
        """Record a failure; ``lost`` events are given up on.

        An error line for ``reason`` opens a quiet window of `DROP_LOG_INTERVAL_S` that a delivery does
        not end: its failures within it are counted and told in the next line for it (the first after the
        window, or the first delivery after it, or at shutdown), so an output that loses every other event
        to one reason (a broker's ACL refusing one topic) logs it once a window, not once an event. After
        the window, a failure the log does not show going on (a delivery worked since, or another reason
        was logged) is an error line again; the one it shows, only where it lost events since, so a
        failure that costs every batch still shows in the log, and a broker that stays unreachable is
        not logged again for each connection tried.
        """
        self.failed += lost
        self.last_error_at = time.time()
        self.last_attempt_error = self.last_error = reason
        self.state = SinkState.FAILING
        now = self._clock()
        losses = self._losses_of(reason)
        earlier, losses.untold = losses.untold, losses.untold + lost
        if now < losses.quiet_until:
            return
        if reason == self._announced:
            if losses.untold:
                self._tell_losses(reason, losses, now)
            return
        if self._announced is not None and (going_on := self._losses.get(self._announced)) is not None:
            self._tell_losses(self._announced, going_on)  # what the error the log shows cost, before the next
        self._announced = reason
        self._log.error("%s: %s%s", self.name, reason, lost_since(losses.untold) if earlier else "")
        losses.untold = 0
        losses.quiet_until = now + DROP_LOG_INTERVAL_S

    def too_old(self, event: OutEvent, now: float, max_age_s: float) -> bool:
        """Whether ``event`` is older than ``max_age_s`` (unless 0) at ``now``, Unix seconds as its
        `OutEvent.capture_time` is, now that it could be sent: then it is dropped, counted with the drops,
        and told at most once per `DROP_LOG_INTERVAL_S` with the events dropped so since. A destination that
        was down does not get what is long past as if it happened now (a light switched for who left)."""
        age_s = now - event.capture_time
        if not max_age_s or age_s <= max_age_s:
            return False
        self.dropped += 1
        self._latest_too_old = (event, age_s, max_age_s)
        self._tell_too_old(self._too_old.add(1, self._clock()))
        return True

    def retrying(self, reason: str) -> int:
        """An attempt failed and will be retried: failing now, with no event lost yet, so /metrics and
        the API show it and a shutdown does not wait on it (`DeliveryTask.drain`).

        ``last_error`` is set only where the sink was not failing yet: a failure that goes on keeps
        the reason it was logged with, so its further losses are only counted (`fail`). Its
        ``last_error_at`` is the time of that reason's latest occurrence, so a retry for another
        reason (an event given up on, then the next retried) leaves both as they were: that reason is
        ``last_attempt_error``, what fails now.

        Returns how many attempts retried for ``reason`` the caller's line is to tell, this one
        included: 1 for the first, 0 while the quiet window it opened lasts (`DROP_LOG_INTERVAL_S`),
        and after it this one and those counted in it; so a receiver that fails now and then costs
        a line a window per reason, not one per event. The caller writes the line, as it knows the
        event and the attempt; what a window holds when the retries stop is told by the first
        delivery after it, or at shutdown.
        """
        self.last_attempt_error = reason
        if self.state is not SinkState.FAILING:
            self.state = SinkState.FAILING
            self.last_error = reason
        if reason == self.last_error:
            self.last_error_at = time.time()
        retries = self._retries.get(reason)
        if retries is None:
            if len(self._retries) >= RETRY_REASONS_MAX:
                oldest = next(iter(self._retries))
                self._tell_retries(oldest, self._retries.pop(oldest).take())
            retries = self._retries[reason] = ThrottledCount(DROP_LOG_INTERVAL_S)
        return retries.add(1, self._clock())

    def lose_at_shutdown(self, events: int) -> None:
        """Count ``events`` still queued, or on their way unconfirmed, when the sink stopped, as dropped;
        and tell what the quiet windows still hold."""
        with self._drops_lock:
            self._tell_drops(self._drops.take())
        for reason, losses in self._losses.items():
            self._tell_losses(reason, losses)
        self._tell_too_old(self._too_old.take())
        for reason, retries in self._retries.items():
            self._tell_retries(reason, retries.take())
        if events:
            self._log.warning("%s: %d event(s) not delivered before shutdown", self.name, events)
            self.dropped += events

    def health(self) -> SinkHealth:
        # The settled counts first: an event is offered before it is settled, so ``queued`` read while
        # the history's writer thread stores events can be a few high for a moment, never below 0.
        delivered, dropped, failed = self.delivered, self.dropped, self.failed
        queued = self.offered - delivered - dropped - failed
        return SinkHealth(
            self.name,
            self.state,
            delivered,
            dropped,
            failed,
            self.last_error,
            self.last_error_at,
            queued=queued,
            last_attempt_error=self.last_attempt_error,
        )

    def _tell_drops(self, count: int) -> None:
        if count and (event := self._latest_drop) is not None:
            self._log.warning(
                "%s: queue full, dropped %d event(s) since the last report (latest a %s of %s)",
                self.name,
                count,
                event.data.get("type"),
                event.stream_id,
            )

    def _tell_too_old(self, count: int) -> None:
        if count and self._latest_too_old is not None:
            event, age_s, max_age_s = self._latest_too_old
            self._log.warning(
                "%s: dropped %d event(s) older than max_event_age_s = %g s by the time they could be sent "
                "(latest a %s of %s, %.0f s old)",
                self.name,
                count,
                max_age_s,
                event.data.get("type"),
                event.stream_id,
                age_s,
            )

    def _losses_of(self, reason: str) -> _Losses:
        """The losses of ``reason``, made the most recent; a new reason past `LOSS_REASONS_MAX` makes the
        reason that failed least recently tell its count and be forgotten."""
        losses = self._losses.pop(reason, None)
        if losses is None:
            losses = _Losses()
            if len(self._losses) >= LOSS_REASONS_MAX:
                oldest = next(iter(self._losses))
                self._tell_losses(oldest, self._losses.pop(oldest))
        self._losses[reason] = losses
        return losses

    def _tell_losses(self, reason: str, losses: _Losses, now: float | None = None) -> None:
        """Tell the events lost to ``reason`` that no line has told: an error while the log shows it going
        on, else a warning (they are past). ``now``: the line opens the reason's next quiet window."""
        if not losses.untold:
            return
        level = logging.ERROR if reason == self._announced else logging.WARNING
        self._log.log(level, "%s: %s%s", self.name, reason, lost_since(losses.untold))
        losses.untold = 0
        if now is not None:
            losses.quiet_until = now + DROP_LOG_INTERVAL_S

    def _tell_retries(self, reason: str, count: int) -> None:
        """Tell ``count`` attempts retried for ``reason`` that no retry's own line has told."""
        if count:
            self._log.warning("%s: %s; %s", self.name, reason, retried_since(count))


def lost_since(count: int) -> str:
    """How an error's line tells of ``count`` events lost to it since the last line that said it."""
    return f" (again: {count} more event(s) lost since it was logged)"


def retried_since(count: int) -> str:
    """How a line tells of ``count`` attempts retried for its reason since the last line that said it."""
    return f"{count} more attempt(s) retried for this reason since it was last logged"


def backoff_s(attempt: int, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> float:
    """The wait before retry number ``attempt`` (0-based): doubling from ``first_s``, capped at ``max_s``."""
    return min(max_s, first_s * 2 ** min(attempt, 30))


class Backoff:
    """When a sink may try an event again.

    Each event starts afresh (`settled`): one a destination keeps failing costs its own retries, never a
    wait for the events after it, which would grow with each such event. Within one event the wait doubles
    from ``first_s`` while the destination gives no answer (down, unreachable, slower than the time-out);
    one that answered, whatever it said, is up, and its event is retried after ``first_s`` each time. A
    quiet the destination asked for (HTTP 429 or 503 with Retry-After) is kept, up to ``max_s``, and holds
    for the next event too: it is the destination's, not the event's. Times are `time.monotonic` seconds,
    passed in.
    """

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._failures = 0
        self._not_before = 0.0
        self._asked_until = 0.0  # the end of the quiet the destination last asked for

    def failed(self, now: float, asked_s: float | None = None, answered: bool = False) -> None:
        """An attempt failed at ``now``; ``answered``: the destination gave an answer (an HTTP status);
        ``asked_s``: the wait it asked for."""
        wait_s = self.first_s if answered else backoff_s(self._failures, self.first_s, self.max_s)
        if asked_s is not None:
            self._asked_until = now + min(self.max_s, asked_s)
        self._not_before = max(now + wait_s, self._asked_until)
        self._failures += 1

    def settled(self) -> None:
        """The event was delivered or given up on: the next one waits for nothing but a quiet asked for."""
        self._failures = 0
        self._not_before = self._asked_until

    def wait_s(self, now: float) -> float:
        """How long from ``now`` until the next attempt may be made: 0 while the destination works."""
        return max(0.0, self._not_before - now)
