"""Requests refused for their credential, counted and told: an operator sees a client with a wrong or
expired token (a brute force on an exposed node, a dashboard whose signed link ran out) without turning
on the access log, and the log never fills with them."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Why a request's credential was refused, as ``segcast_auth_refused_total``'s ``reason`` label names it, and as
#: the log tells it. ``expired`` is a signed token this server minted, refused for its expiry: past, or (a
#: clock that ran fast at its minting) later than its role's longest life. ``out_of_scope`` is a scoped signed
#: token (a dashboard's link, the history page's pictures) asked for what its scope does not open: a leaked
#: link tried on the node's other routes.
REFUSAL_REASONS: Mapping[str, str] = {
    "missing": "with no token",
    "wrong": "with a token not valid here",
    "expired": "with an expired signed token",
    "in_address": "with a configured token in the address",
    "role_too_low": "with a viewer's token where an admin's is needed",
    "out_of_scope": "with a scoped token outside its scope",
}
#: Refusals counted but not logged: the viewer's page asks without a token before its user gives one, so each
#: visit would be a WARNING; a credential presented and refused is what the log tells.
UNLOGGED_REASONS = frozenset({"missing"})
#: The least time between two log lines about one client address's refused requests: a client with an old
#: token retrying every second is told once a minute, with how many were refused since.
REFUSAL_LOG_INTERVAL_S = 60.0
#: The most client addresses told of one by one at a time; refusals from others within their quiet minute
#: share one line (a client spraying addresses could otherwise fill the memory and the log).
REFUSAL_LOG_MAX_ADDRESSES = 64


@dataclass(slots=True)
class _AddressRefusals:
    """An address's refusals not yet in a log line, by reason, and until when (monotonic) no line tells them."""

    untold: Counter[str] = field(default_factory=Counter)
    quiet_until: float = -float("inf")


class Refusals:
    """Requests refused for their credential: counted by reason for ``/metrics`` (`by_reason`), and, but for
    `UNLOGGED_REASONS`, told in the log as a WARNING per client address at most every `REFUSAL_LOG_INTERVAL_S`,
    never with the token.

    An address's first refusal is told at once; those within the next minute are counted into its next
    line, written at its first refusal after that minute. At most ``max_addresses`` are told of one by one:
    when the table is full, the addresses whose minute is over leave it (told of what they still had),
    and refusals from any further address share one line, throttled alike. So neither the memory nor the
    log grows with the number of addresses that send a wrong token.
    """

    def __init__(self, max_addresses: int = REFUSAL_LOG_MAX_ADDRESSES) -> None:
        self.by_reason: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self._max_addresses = max_addresses
        self._addresses: dict[str, _AddressRefusals] = {}
        self._others = _AddressRefusals()

    def add(self, address: str | None, reason: str, now: float | None = None) -> None:
        """Count a request from ``address`` refused for ``reason``, at monotonic ``now``."""
        now = time.monotonic() if now is None else now
        self.by_reason[reason] += 1
        if reason in UNLOGGED_REASONS:
            return
        name, refusals = self._refusals_of(address or "an unknown address", now)
        refusals.untold[reason] += 1
        if now >= refusals.quiet_until:
            self._tell(name, refusals, now)

    def _refusals_of(self, address: str, now: float) -> tuple[str, _AddressRefusals]:
        """Where ``address``'s refusals are kept, and the name its lines give it."""
        if (known := self._addresses.get(address)) is not None:
            return address, known
        if len(self._addresses) >= self._max_addresses:
            self._forget_quiet(now)
        if len(self._addresses) >= self._max_addresses:
            return f"other addresses (over {self._max_addresses} refused within a minute)", self._others
        added = self._addresses[address] = _AddressRefusals()
        return address, added

    def _forget_quiet(self, now: float) -> None:
        """Let go of the addresses whose quiet minute is over, telling what is still untold of them."""
        for address, refusals in list(self._addresses.items()):
            if now >= refusals.quiet_until:
                if refusals.untold:
                    self._tell(address, refusals, now)
                del self._addresses[address]

    @staticmethod
    def _tell(address: str, refusals: _AddressRefusals, now: float) -> None:
        """Write the line of what ``address`` had untold, and open its quiet minute."""
        count = refusals.untold.total()
        reasons = ", ".join(f"{n} {REFUSAL_REASONS[reason]}" for reason, n in refusals.untold.most_common())
        log.warning(
            "refused %d request%s from %s since its last such line: %s (told at most once a minute per address; "
            "/metrics counts every refusal in segcast_auth_refused_total)",
            count,
            "" if count == 1 else "s",
            address,
            reasons,
        )
        refusals.untold.clear()
        refusals.quiet_until = now + REFUSAL_LOG_INTERVAL_S
