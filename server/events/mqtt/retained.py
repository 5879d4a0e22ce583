"""What the broker is to retain of each stream for Home Assistant: its counts, its availability, the
discovery configs of its sensors (and of its zones' occupancy binary sensors, its zones' and lines'
device triggers and image entities, `server.events.mqtt.topics`), and their clearing once a count or the
stream goes away, with the pictures of its zones' and lines' events (`server.events.mqtt.snapshots`): a
picture is big, and one of a deleted zone would stay at the broker for good. A picture is of a person, so
none goes for a zone or line the stream's counts no longer have (`pictures_sent`): the events its
deletion ends (an exit at it) come after its picture was cleared.

With ``discovery`` off nothing is announced, and the configs this node announced before (a run with it
on) are cleared; with ``snapshots`` off, the pictures a run before left. Both are found by reading back what
the broker retains of each stream this node runs: its device's discovery configs once a connection
(`config_filters`), with or without discovery; its pictures under this node's prefix once a process
(`picture_filters_to_read`), and only where no image entity's config leads to them (``snapshots`` off, or
discovery off): a picture is up to ``max_snapshot_kb``, and a broker may be metered. While another segcast
is live on this prefix (`server.events.mqtt.claim`), neither is cleared but a config of a count gone with
discovery on: the other's configs and pictures are under the same names, and it may announce, or have
pictures of, what this node does not.

Kept apart from the connection (`server.events.mqtt.connection`), which asks here for the next messages to send
and says what a connection ended without; everything here runs on the loop and only decides what to
send: at most one of each kind is pending per stream, the newest.

Nodes of one fleet share ``I`` and each has its own ``P`` (`server.events.mqtt.connection`): a camera keeps its
device wherever it runs, and its config says which node's topics Home Assistant listens to. A node
clears only configs it published. Removing a stream, it clears those it announced without reading
them back, so it cannot tell whether another node has published the same one since, and a camera
moves in this order: removed from the old node first (done once its retained counts are gone from
the broker), then added to the new one. Home Assistant then takes its sensors away and back under
the same ids, and the new node's config is the one left retained; added first, the old node's
removal would clear the new node's config, and the device would be gone until the new node connects
again. The configs read back of a stream it runs (`read_config`) are told apart by the topics they
point at: only this node's own are cleared, so a camera a node has just been given never loses a
config its old node still has retained.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import aiomqtt

from server.events.counts import TRACKS, Counts
from server.events.mqtt.topics import UNSAFE, Configs, MqttTopics
from server.events.mqtt.window import OutMessage

#: The topic levels a zone's and a line's pictures are under, below their stream's (`MqttTopics.shape_snapshot`).
SHAPE_LEVELS = ("zones", "lines")


class RetainedStreams:
    """Per stream, what is pending for the broker to retain, and what it retains of this process's."""

    def __init__(self, topics: MqttTopics, discovery: bool, snapshots: bool = False) -> None:
        self.topics = topics
        self.discovery = discovery
        #: Whether pictures are read back themselves: with ``snapshots`` and discovery on, the image entities'
        #: configs read back lead to this node's (`read_config`), at a few hundred bytes each, not a picture's size.
        self._reads_pictures = not (snapshots and discovery)
        #: Per stream, its newest counts since this process started or inference last came back.
        self._latest: dict[str, Counts] = {}
        self._unsent_counts: dict[str, Counts] = {}
        self._live: dict[str, bool] = {}  # per stream heard of, whether it is live
        self._inference = True  # whether frames are inferred now: a local model's always are
        self._unsent_availability: dict[str, bool] = {}
        self._online: set[str] = set()  # streams whose availability at the broker is (or is on its way to be) "online"
        #: Per stream, the discovery config topics sent on this connection.
        self._announced: dict[str, set[str]] = {}
        #: Per stream, the discovery config topics (sensors, binary sensors, device triggers) this process
        #: published and has not (knowingly) cleared.
        self._sensors: dict[str, set[str]] = {}
        #: Per stream, the snapshot topics this process published a picture on (or read back an image entity of)
        #: and has not (knowingly) cleared.
        self._pictures: dict[str, set[str]] = {}
        #: Per stream, the snapshot topics of the zones and lines of its counts last offered: an event's picture
        #: goes on no other (`pictures_sent`).
        self._configured: dict[str, set[str]] = {}
        self._forgotten: set[str] = set()  # removed streams whose retained messages are still to clear
        #: Every stream heard of (its state or its counts) and not removed since: the streams this process has.
        self._streams: set[str] = set()
        #: Streams this process does not have that the broker retains as ``online``: to say offline.
        self._stale: set[str] = set()
        #: Whether no other segcast was live under this prefix as this connection was made (`read_back`).
        self._prefix_ours = True
        #: Streams whose device is to be announced on this connection before their first counts (`_device`).
        self._devices_due: set[str] = set()
        #: Streams whose retained discovery configs are to be read back on this connection (`read_config`), and
        #: their pictures with them where still unread.
        self._configs_unread: set[str] = set()
        #: Streams whose retained pictures are yet to be read back in this process (`read_picture`): once read,
        #: every picture of theirs at the broker is known, whatever the connection.
        self._pictures_unread: set[str] = set()

    # -- what the outputs say -----------------------------------------------------------------------

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        self._has(stream_id)
        self._latest[stream_id] = counts
        self._unsent_counts[stream_id] = counts
        self._configured[stream_id] = self.topics.snapshots(stream_id, counts)

    def stream_live(self, stream_id: str, live: bool) -> bool:
        """Whether ``stream_id`` is live now: its sensors are available only while it is. True if
        that changed something to send.

        A stream that stops being live (its camera reconnecting) has its counts forgotten as the
        newest, as for an inference outage: once live again it says ``online`` only after counts of a
        frame read since, not on the strength of those from before its camera went.
        """
        self._has(stream_id)
        if self._live.get(stream_id) is live:
            return False
        self._live[stream_id] = live
        if not live:
            self._latest.pop(stream_id, None)
        self._unsent_availability[stream_id] = live and self._inference
        return True

    def inference_available(self, available: bool) -> bool:
        """Whether frames are inferred now: while they are not, no stream's sensors are available. True
        if that changed something to send.

        The counts had before a change are forgotten as the newest (they stay retained at the
        broker), so a live stream says ``online`` again only after counts of a frame that came
        after it, as after a restart (`_counts_published`).
        """
        if available is self._inference:
            return False
        self._inference = available
        self._latest.clear()
        for stream_id, live in self._live.items():
            if live:
                self._unsent_availability[stream_id] = available
        return True

    def forget_stream(self, stream_id: str) -> None:
        self._streams.discard(stream_id)
        self._devices_due.discard(stream_id)
        self._configs_unread.discard(stream_id)
        self._pictures_unread.discard(stream_id)
        self._latest.pop(stream_id, None)
        self._unsent_counts.pop(stream_id, None)
        self._live.pop(stream_id, None)
        self._unsent_availability.pop(stream_id, None)
        self._configured.pop(stream_id, None)
        self._forgotten.add(stream_id)

    def pictures_sent(self, stream_id: str, topics: Sequence[str]) -> bool:
        """An event's pictures are about to go on ``topics``: True, and they are known as retained, if ``stream_id``
        is this process's and its counts last offered have their zone or line; False for a removed stream, or a
        deleted zone or line, whose pictures were cleared with it: they are not to go.

        Judged by the counts offered, not those sent: a frame's counts are offered just after its events, and
        before any of them is sent (`server.events.outputs`).
        """
        if stream_id not in self._streams or not self._configured.get(stream_id, set()).issuperset(topics):
            return False
        self._pictures.setdefault(stream_id, set()).update(topics)
        return True

    def _has(self, stream_id: str) -> None:
        """``stream_id`` is this process's: it says its own availability from now on, so no
        ``online`` the broker retains from a run before is corrected for it any more. New, its device is
        announced (with discovery on) and its configs and pictures read back."""
        if stream_id not in self._streams:
            if self.discovery:
                self._devices_due.add(stream_id)
            self._configs_unread.add(stream_id)
            if self._reads_pictures:
                self._pictures_unread.add(stream_id)
        self._streams.add(stream_id)
        self._stale.discard(stream_id)

    # -- for the connection ------------------------------------------------------------------------

    def connected(self) -> None:
        """A new connection, segcast said online on it: every stream's counts and availability are sent
        again (the broker may have lost the retained ones), and its sensors announced again (with discovery on);
        its configs are read back again (its pictures only if not read yet: `picture_filters_to_read`)."""
        self._announced.clear()
        self._unsent_counts = dict(self._latest)
        self._unsent_availability = {stream_id: live and self._inference for stream_id, live in self._live.items()}
        if self.discovery:
            self._devices_due = set(self._streams)
        self._configs_unread = set(self._streams)

    def read_back(self, retained: Iterable[aiomqtt.Message], prefix_ours: bool = True) -> list[str]:
        """The streams to say offline before segcast says online, of the availabilities the broker
        retains (`server.events.mqtt.connection`'s ``_read_stale``): those not this process's that say online.

        None while another segcast is live under this prefix (not ``prefix_ours``, for this connection):
        a stream it says online is its own, live, not one a crashed run left (`server.events.mqtt.claim`).
        """
        self._stale.clear()
        self._prefix_ours = prefix_ours
        return sorted(self._stale_among(retained)) if prefix_ours else []

    def read_retained(self, message: aiomqtt.Message) -> bool:
        """A retained message read back after `read_back` (`read_later`, `read_config`, `read_picture`): True if
        it is one more to correct."""
        return self.read_later(message) or self.read_config(message) or self.read_picture(message)

    def read_later(self, message: aiomqtt.Message) -> bool:
        """A retained availability that came after `read_back`: True if it is one more to say offline."""
        if self._prefix_ours and (stale := self._stale_among([message])):
            self._stale |= stale
            return True
        return False

    @property
    def configs_to_read(self) -> bool:
        """Whether a stream's retained discovery configs are yet to be read back on this connection."""
        return bool(self._configs_unread)

    def next_configs_to_read(self) -> str | None:
        """A stream whose retained discovery configs (`config_filters`), and pictures where still unread
        (`picture_filters_to_read`), are to be read back now, taken; None if none is."""
        return self._configs_unread.pop() if self._configs_unread else None

    def config_filters(self, stream_id: str) -> tuple[str, ...]:
        """The filters of ``stream_id``'s device's discovery configs at the broker (`read_config`); none for a
        stream id a filter cannot hold as it is (`MqttTopics.device_discovery`)."""
        return self.topics.device_discovery(stream_id)

    def picture_filters_to_read(self, stream_id: str) -> tuple[str, ...]:
        """The filters of ``stream_id``'s pictures under this node's prefix (`read_picture`) if they are to be
        read back now: not yet read in this process (`pictures_read`), no image entity's config leading to them,
        and no other segcast live on this prefix, whose pictures they may be (`read_back`)."""
        if stream_id not in self._pictures_unread or not self._prefix_ours:
            return ()
        return self._picture_filters(stream_id)

    def pictures_read(self, stream_id: str) -> None:
        """``stream_id``'s retained pictures were read back: not again in this process, on any connection."""
        self._pictures_unread.discard(stream_id)

    def read_config(self, message: aiomqtt.Message) -> bool:
        """A retained discovery config read back: True if it is one this node published (a run before, that
        ended without clearing it) for a count its stream no longer has, or with discovery off now, now to be
        cleared.

        This node's own configs of a stream it runs are told by `MqttTopics.published_here`; another
        node's under the same ids are left alone, and so is every one with discovery off while another
        segcast is live on this prefix (`read_back`). Each one of this node's is known as retained from
        here on, so the stream's counts clear it unless they have its count (`_counts`): at once where
        they are known, else with its first counts (a camera that never works keeps it, unavailable).
        """
        topic = str(message.topic)
        stream_id = self.topics.stream_of_discovery(topic)
        if stream_id is None or stream_id not in self._streams or not message.retain:
            return False
        if not isinstance(message.payload, bytes) or not (self.discovery or self._prefix_ours):
            return False
        retained = self._sensors.setdefault(stream_id, set())
        if topic in retained or not self.topics.published_here(stream_id, topic, message.payload):
            return False
        retained.add(topic)
        if (picture := self.topics.snapshot_of_config(stream_id, topic, message.payload)) is not None:
            self._pictures.setdefault(stream_id, set()).add(picture)  # cleared with its image entity
        latest = self._latest.get(stream_id)
        if latest is None or topic in self._configs(stream_id, latest):
            return False
        self._unsent_counts.setdefault(stream_id, latest)
        return True

    def read_picture(self, message: aiomqtt.Message) -> bool:
        """A retained picture read back, of a stream this node runs: True if it is one its counts no longer
        have (its zone or line deleted while segcast was stopped), or any with ``snapshots`` off now, now to
        be cleared.

        Left alone while another segcast is live on this prefix (`read_back`): its stream of the same id
        may publish pictures this node does not. Known as retained from here on, cleared by the stream's
        counts as `read_config`'s configs are.
        """
        stream_id = next((s for s in self._streams if _matches(message, self._picture_filters(s))), None)
        if stream_id is None or not message.retain or not message.payload or not self._prefix_ours:
            return False
        known = self._pictures.setdefault(stream_id, set())
        if (topic := str(message.topic)) in known:
            return False
        known.add(topic)
        latest = self._latest.get(stream_id)
        if latest is None or topic in self.topics.snapshots(stream_id, latest):
            return False
        self._unsent_counts.setdefault(stream_id, latest)
        return True

    def offline_at_shutdown(self) -> list[str]:
        """The streams to say offline as segcast stops: those it said online, but a removed one, whose
        retained messages are cleared, not kept."""
        return sorted(self._online - self._forgotten)

    def next_messages(self) -> list[OutMessage]:
        """One stream's pending removal, else the correction of one a run before left online (`read_back`),
        else one's availability, else one's counts (with their sensors), else a new one's device; [] if
        none is pending."""
        if self._forgotten:
            stream_id = next(iter(self._forgotten))
            self._forgotten.discard(stream_id)
            return self._removal(stream_id)
        if self._stale:
            stream_id = self._stale.pop()
            return [OutMessage(self.topics.availability(stream_id), "offline", True, stream_id, "its availability")]
        for stream_id, live in self._unsent_availability.items():
            if not live or self._counts_published(stream_id):
                return [self._availability(stream_id, self._unsent_availability.pop(stream_id))]
        if self._unsent_counts:
            stream_id = next(iter(self._unsent_counts))
            return self._counts(stream_id, self._unsent_counts.pop(stream_id))
        while self._devices_due:
            if messages := self._device(self._devices_due.pop()):
                return messages
        return []

    def keep_unconfirmed(self, messages: Iterable[OutMessage]) -> None:
        """What a connection ended without: its clears are sent again.

        A sensor or a picture whose clear is unconfirmed is known as retained again: the stream's removal,
        done again, clears it, and so do its counts, published anew on every connection.
        """
        for message in messages:
            if message.clears_sensor:
                self._sensors.setdefault(message.stream_id, set()).add(message.topic)
            if message.picture and (message.removal or message.stream_id in self._streams):
                self._pictures.setdefault(message.stream_id, set()).add(message.topic)
            if message.removal:
                self._forgotten.add(message.stream_id)

    def _stale_among(self, messages: Iterable[aiomqtt.Message]) -> set[str]:
        """The streams not this process's that ``messages`` (retained availabilities) say are online."""
        stale = set()
        for message in messages:
            stream_id = self.topics.stream_of_availability(str(message.topic))
            ours = stream_id in self._streams or stream_id in self._forgotten
            if stream_id is not None and not ours and message.retain and message.payload == b"online":
                stale.add(stream_id)
        return stale

    def _counts_published(self, stream_id: str) -> bool:
        """Whether this process has counts of ``stream_id`` (since inference last came back) and none
        waiting: its ``online`` may go.

        Until then the broker may retain the counts of the run before, or of the last frame before an
        outage, which ``online`` would pass off as the scene now; sent over the one connection in
        order, the counts reach every subscriber before the ``online`` after them.
        """
        return stream_id in self._latest and stream_id not in self._unsent_counts

    def _availability(self, stream_id: str, live: bool) -> OutMessage:
        if live:
            self._online.add(stream_id)
        else:
            self._online.discard(stream_id)
        payload = "online" if live else "offline"
        return OutMessage(self.topics.availability(stream_id), payload, True, stream_id, "its availability")

    def _counts(self, stream_id: str, counts: Counts) -> list[OutMessage]:
        """The stream's counts, after the configs of its sensors not yet announced and the clearing of stale ones
        (every one with discovery off), and of the pictures of zones and lines it no longer has."""
        messages: list[OutMessage] = []
        configs = self._configs(stream_id, counts)
        retained = self._sensors.setdefault(stream_id, set())
        announced = self._announced.setdefault(stream_id, set())
        stale = retained - configs.keys()
        for topic in sorted(stale):
            what = "the removal of a sensor or trigger"
            messages.append(OutMessage(topic, b"", True, stream_id, what, clears_sensor=True))
            retained.discard(topic)
            announced.discard(topic)
        messages += self._announcing(stream_id, configs)
        messages += self._stale_pictures(stream_id, counts)
        messages.append(
            OutMessage(self.topics.counts(stream_id), json.dumps(dict(counts)), True, stream_id, "its counts")
        )
        return messages

    def _configs(self, stream_id: str, names: Iterable[str]) -> Configs:
        """The discovery configs of counts ``names`` of ``stream_id`` this node announces: none with discovery off."""
        return self.topics.discovery_configs(stream_id, names) if self.discovery else {}

    def _picture_filters(self, stream_id: str) -> tuple[str, ...]:
        """The filters of ``stream_id``'s pictures under this node's prefix: the stream's, and its zones' and lines'."""
        if UNSAFE.search(stream_id):
            return ()
        stream_picture = self.topics.snapshot(stream_id)
        stream_level, picture = stream_picture.rsplit("/", 1)
        return (stream_picture, *(f"{stream_level}/{shapes}/+/{picture}" for shapes in SHAPE_LEVELS))

    def _stale_pictures(self, stream_id: str, counts: Counts) -> list[OutMessage]:
        """Clear the pictures of the zones and lines ``counts`` no longer have; every one without ``snapshots``
        (a run before published them)."""
        known = self._pictures.get(stream_id, set())
        stale = known - self.topics.snapshots(stream_id, counts)
        known -= stale
        what = "the removal of a snapshot"
        return [OutMessage(topic, b"", True, stream_id, what, picture=True) for topic in sorted(stale)]

    def _device(self, stream_id: str) -> list[OutMessage]:
        """The stream's device in Home Assistant from its start, whatever its camera does: the sensor of the
        count every stream has, unavailable until its first counts.

        Its zones' and lines' sensors wait for those counts, and so does the clearing of configs read
        back: which of its shapes count is known only from its first frame (`TRACKS`).
        """
        return self._announcing(stream_id, self.topics.discovery_configs(stream_id, (TRACKS,)))

    def _announcing(self, stream_id: str, configs: Configs) -> list[OutMessage]:
        """The configs among ``configs`` not yet announced on this connection, announced."""
        retained = self._sensors.setdefault(stream_id, set())
        announced = self._announced.setdefault(stream_id, set())
        messages = []
        for topic, config in configs.items():
            if topic not in announced:
                messages.append(OutMessage(topic, json.dumps(config()), True, stream_id, "a discovery config"))
                announced.add(topic)
                retained.add(topic)
        return messages

    def _removal(self, stream_id: str) -> list[OutMessage]:
        """Remove a removed stream's sensors from Home Assistant and its retained pictures, counts and availability.

        What it announced is forgotten here rather than in `forget_stream`: a config on its way when
        the stream was removed is marked announced after that, and a stream added again under the
        same id must announce its sensors again.
        """
        self._announced.pop(stream_id, None)
        self._online.discard(stream_id)
        sensors = sorted(self._sensors.pop(stream_id, ()))
        pictures = sorted(self._pictures.pop(stream_id, ()))
        what = "the removal of its sensors"
        # An empty retained message: the broker drops the retained one, Home Assistant the sensor it described.
        return [
            *(OutMessage(topic, b"", True, stream_id, what, removal=True, clears_sensor=True) for topic in sensors),
            *(OutMessage(topic, b"", True, stream_id, what, removal=True, picture=True) for topic in pictures),
            OutMessage(self.topics.counts(stream_id), b"", True, stream_id, what, removal=True),
            OutMessage(self.topics.availability(stream_id), b"", True, stream_id, what, removal=True),
        ]


def _matches(message: aiomqtt.Message, filters: Iterable[str]) -> bool:
    return any(message.topic.matches(topic_filter) for topic_filter in filters)
