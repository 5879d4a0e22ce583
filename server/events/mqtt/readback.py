"""Reading retained messages back from the broker by subscribing, and giving it up where the broker forbids it.

segcast reads back three kinds (`server.events.mqtt.connection`): every stream's availability under its
topic prefix (with the prefix's status and which segcast said it, `server.events.mqtt.claim`), the
discovery configs of each stream it runs, with discovery on or off, and its pictures under the prefix
(`server.events.mqtt.retained`). An account may be let read one and not another (a broker for a user
without Home Assistant may refuse every filter under its discovery prefix, or a privacy policy every
picture), so each kind is given up on its own, saying what it costs: mosquitto grants a
subscription its ACL forbids and sends nothing (nothing to give up), another broker refuses it (given up at
once), and AWS IoT ends the connection for it (given up after `READS_CUT_LIMIT` connections in a row ended so,
or every connection would end there and nothing else would ever be published).
"""

from __future__ import annotations

import logging

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

#: Connections ended by the broker in a row as it was asked for one kind of retained message before it
#: is not asked for it any more: once could be the network.
READS_CUT_LIMIT = 2


class ReadBack:
    """One kind of retained message read back: subscribed to (QoS 0) until the broker forbids it."""

    def __init__(self, output: str, without: str) -> None:
        """``output``: the output's name for the log; ``without``: what is lost once it is given up."""
        self.output = output
        self.without = without
        #: Subscriptions of this kind in a row whose connection ended before the broker answered.
        self._cut = 0
        self.refused = False

    async def subscribe(self, client: aiomqtt.Client, *topics: str) -> bool:
        """Subscribe to ``topics``, in one request; False, and not subscribed, where the broker forbids it now
        or did before.

        The retained messages come into ``client.messages`` before the broker answers the
        unsubscription that should follow (mosquitto does so, and MQTT gives no other end-of-retained mark),
        in the order of ``topics``.
        """
        named = ", ".join(topics)
        if self.refused:
            return False
        self._cut += 1  # undone below, unless the connection ends here
        if self._cut > READS_CUT_LIMIT:
            self._refuse(named, "ended the connection for it twice in a row")
            return False
        # QoS 0: sent at once, not held by the broker's window
        granted = await client.subscribe([(topic, 0) for topic in topics])
        self._cut = 0
        if any(isinstance(code, ReasonCode) and code.is_failure for code in granted):
            self._refuse(named, "refused the subscription")
            return False
        return True

    def _refuse(self, topic: str, how: str) -> None:
        """Stop reading this kind back, which the broker does not let this account do, and say so once."""
        self.refused = True
        log.warning("%s: the broker %s to read %s: not asked again; %s", self.output, how, topic, self.without)
