"""A UDP relay between two ICE agents on 127.0.0.1, so a test can black out a WebRTC peer's network.

Each side is told (in the offer and the answer, `rewrite`) that the other is at one of the relay's
ports: every packet, media, RTCP and ICE checks alike, then passes through here, and while
`blackout` is set none does, either way, as when a Wi-Fi link drops. Clearing it brings the same
path back (the same addresses and ports), as the link coming back does.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

Address = tuple[str, int]

#: A host candidate: foundation, component, transport, priority, address, port, then the rest.
_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d) (?:udp|UDP) (\d+) (\S+) (\d+) typ (\S+).*$")


@dataclass(slots=True)
class Datagrams:
    """What came from one side: passed on, or dropped by the blackout."""

    passed: int = 0
    dropped: int = 0


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, towards_answerer: bool) -> None:
        self._relay = relay
        self._towards_answerer = towards_answerer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._relay._forward(data, self._towards_answerer)


class UdpRelay:
    """Relays between an offerer and an answerer; `start` it, put it in their descriptions, `close` it.

    ``offerer`` and ``answerer`` are the addresses each side's media really comes from (from their
    own descriptions, `first_candidate`). ``from_offerer`` and ``from_answerer`` count their datagrams.
    """

    def __init__(self) -> None:
        self.blackout = False
        self.from_offerer = Datagrams()
        self.from_answerer = Datagrams()
        self.offerer: Address | None = None
        self.answerer: Address | None = None
        self._to_offerer: asyncio.DatagramTransport | None = None  # the answerer's view of the offerer
        self._to_answerer: asyncio.DatagramTransport | None = None  # the offerer's view of the answerer

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._to_answerer, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, towards_answerer=True), local_addr=("127.0.0.1", 0)
        )
        self._to_offerer, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, towards_answerer=False), local_addr=("127.0.0.1", 0)
        )

    @property
    def offerer_seen_at(self) -> Address:
        """Where the answerer is to send to reach the offerer: put it in the offer."""
        assert self._to_offerer is not None, "start the relay first"
        return self._to_offerer.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    @property
    def answerer_seen_at(self) -> Address:
        """Where the offerer is to send to reach the answerer: put it in the answer."""
        assert self._to_answerer is not None, "start the relay first"
        return self._to_answerer.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def close(self) -> None:
        for transport in (self._to_offerer, self._to_answerer):
            if transport is not None:
                transport.close()

    def _forward(self, data: bytes, towards_answerer: bool) -> None:
        # A datagram from the offerer arrives on the socket the offerer sends to (`_to_answerer`) and
        # leaves from the one the answerer knows as the offerer, so each side sees one steady peer.
        out, destination = (self._to_offerer, self.answerer) if towards_answerer else (self._to_answerer, self.offerer)
        counts = self.from_offerer if towards_answerer else self.from_answerer
        if self.blackout or out is None or destination is None or out.is_closing():
            counts.dropped += 1
            return
        counts.passed += 1
        out.sendto(data, destination)


def first_candidate(sdp: str) -> Address:
    """The first IPv4 candidate for RTP (component 1) that ``sdp`` lists: where that peer's media comes from."""
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line)
        if match and match.group(2) == "1" and ":" not in match.group(4):
            return match.group(4), int(match.group(5))
    raise ValueError("the description lists no IPv4 candidate")


def rewrite(sdp: str, address: Address) -> str:
    """``sdp`` with ``address`` as its only candidate (and connection address), so the other side sends there."""
    lines: list[str] = []
    done = False
    for line in sdp.split("\r\n"):
        match = _CANDIDATE.match(line)
        if match:
            if done or match.group(2) != "1" or ":" in match.group(4):
                continue
            line = f"a=candidate:{match.group(1)} 1 udp {match.group(3)} {address[0]} {address[1]} typ host"
            done = True
        elif line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {address[0]}"
        elif line.startswith("m="):
            line = re.sub(r"^(m=\S+ )\d+", lambda m: f"{m.group(1)}{address[1]}", line)
        lines.append(line)
    return "\r\n".join(lines)
