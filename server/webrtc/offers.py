"""What segcast checks in an offer's SDP before a peer is made for it, and how a refusal is worded.

aiortc answers offers it cannot use, and fails later where no one hears of it (`connectable`); it
runs ICE checks towards every candidate an offer lists, wherever they point (`MAX_REMOTE_CANDIDATES`,
`without_denied_candidates`); and its parser fails on malformed SDP with Python's own exceptions
(``KeyError: 'bogus'``, ``list index out of range``), whose text would tell a client nothing
(`refusal`).
"""

from __future__ import annotations

import ipaddress
import re

from aiortc.codecs import CODECS
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.sdp import SessionDescription, candidate_from_sdp, grouplines

from server.http.access.policy import SourcePolicy, SourceRefused

#: Remote ICE candidates one media section may list. Each one makes segcast send STUN checks to the
#: address it names for as long as the peer connects (~5 per candidate before a player's time-out), so
#: an offer listing hundreds would turn segcast into a prober of addresses of the client's choosing. A
#: browser lists a few per network interface (host, server-reflexive and relayed, UDP and TCP). 32
#: leave room for a machine with VPNs and containers, and paired with segcast's few host candidates
#: stay near the 100 candidate pairs that RFC 8445 (section 6.1.2.5) recommends a checklist hold at most.
MAX_REMOTE_CANDIDATES = 32
#: Python's own words for a value its parser could not read (``int()``, unpacking, an enum), which
#: aiortc passes on as they are: they would tell a client nothing about its offer.
_PYTHON_MESSAGE = re.compile(
    r"invalid literal for |(not enough|too many) values to unpack|could not convert "
    r"| is not a valid |does not appear to be an"
)
#: How an SDP line naming an ICE candidate starts.
CANDIDATE = "a=candidate:"
#: What a refusal says of an offer aiortc's parser could not read. Which line it failed on is not
#: said: its exceptions do not tell, and finding out would mean parsing the offer again line by line.
MALFORMED = "the offer's SDP is malformed: send the SDP text the browser's createOffer() gave"


class OfferError(ValueError):
    """The offer cannot be answered as sent; the message tells the client what to change."""


def connectable(sdp: str) -> SessionDescription:
    """The offer parsed; `OfferError` if a media section in it could never connect, or lists more
    candidates than `MAX_REMOTE_CANDIDATES`.

    aiortc answers such an offer, and only fails later, with no one to tell: a section without a
    DTLS fingerprint it can check fails its handshake (in a task whose error no one reads); one the
    offerer disabled (port 0, not ``bundle-only``) or one whose ``m=`` line lists no codec aiortc
    has (it takes codecs from ``a=rtpmap`` lines the ``m=`` line does not list) never gets media.
    Its stream would sit ``starting``, or its player hold a peer slot, until a time-out ended them.
    Two sections with one ``a=mid`` make aiortc fail with an ``AttributeError`` as it answers.
    """
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser fails with assorted exception types, even AssertionError
        raise malformed(exc) from exc
    _, sections = grouplines(sdp)
    mids: dict[str, int] = {}
    for index, (media, lines) in enumerate(zip(description.media, sections, strict=True)):
        name = f"the offer's media section {index} ({media.kind})"
        if media.port == 0 and "a=bundle-only" not in lines:
            raise OfferError(f"{name} is disabled (port 0): offer only what is to be sent or received")
        if len(media.ice_candidates) > MAX_REMOTE_CANDIDATES:
            raise OfferError(
                f"{name} lists {len(media.ice_candidates)} ICE candidates; at most {MAX_REMOTE_CANDIDATES} "
                "(a browser lists a few per network interface)"
            )
        mid = media.rtp.muxId
        if mid and mids.setdefault(mid, index) != index:
            raise OfferError(f"{name} has the a=mid:{mid} of section {mids[mid]}: each section needs its own")
        fingerprints = media.dtls.fingerprints if media.dtls is not None else []
        if not any(fingerprint.algorithm.lower() in X509_DIGEST_ALGORITHMS for fingerprint in fingerprints):
            digests = ", ".join(X509_DIGEST_ALGORITHMS)
            raise OfferError(f"{name} has no DTLS fingerprint: it needs a=setup and an a=fingerprint by {digests}")
        if media.kind in CODECS:
            listed = [codec for codec in media.rtp.codecs if codec.payloadType in media.fmt]
            if not find_common_codecs(CODECS[media.kind], listed):
                usable = ", ".join(sorted({c.mimeType.split("/")[1] for c in CODECS[media.kind]} - {"rtx"}))
                raise OfferError(f"{name} lists no codec segcast can use: offer one of {usable}")
    return description


def without_denied_candidates(sdp: str, policy: SourcePolicy) -> tuple[str, int]:
    """``sdp`` without the candidates whose address is in ``[server] deny_networks``, and how many went.

    The API may not send a camera connection there, and an offer may not send segcast's ICE checks
    there either (a cloud machine's metadata address, by default). Only addresses written as such are
    judged: a browser's ``.local`` name is resolved by aioice on the LAN (over mDNS, where it finds the
    browser itself), and resolving any other name here would hold up the event loop. A browser whose
    every candidate was left out may still connect: its own checks reach segcast's candidates, and a
    check's sender is answered there, where it is (a peer-reflexive candidate).
    """
    kept: list[str] = []
    dropped = 0
    for line in sdp.splitlines(keepends=True):  # by lines as aiortc's parser splits them
        if line.startswith(CANDIDATE) and _is_denied(line[len(CANDIDATE) :], policy):
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped


def refusal(exc: Exception, context: str) -> OfferError:
    """The `OfferError` for ``exc``, which aiortc raised as it took the offer (``context``: at which step).

    aiortc's own refusals (``RTCP mux is not enabled``, no codec in common) keep their words; Python's
    exceptions from inside aiortc say the SDP is malformed instead (`malformed`).
    """
    text = str(exc).strip()
    worded_by_aiortc = isinstance(exc, ValueError | OperationError | InvalidStateError | InvalidAccessError)
    if worded_by_aiortc and text and not _PYTHON_MESSAGE.search(text):
        return OfferError(f"{context}: {text.splitlines()[0]}")
    return malformed(exc)


def malformed(exc: BaseException) -> OfferError:
    """The `OfferError` for an offer aiortc's parser failed on with ``exc``: `MALFORMED`, not the
    exception's own words (``KeyError: 'bogus'``, ``list index out of range``)."""
    return OfferError(MALFORMED)


def _is_denied(candidate: str, policy: SourcePolicy) -> bool:
    """Whether ``candidate`` (an ``a=candidate`` line's value) names an IP address in ``deny_networks``.

    One that does not parse is kept: it is a session-level line, which aiortc ignores (`connectable`
    has parsed every section's).
    """
    try:
        host = candidate_from_sdp(candidate).ip
        ipaddress.ip_address(host.partition("%")[0])
    except Exception:  # aiortc's parser fails as in `connectable`; or a name: see `without_denied_candidates`
        return False
    try:
        policy.check_host(host)  # an address: nothing to look up
    except SourceRefused:
        return True
    return False
