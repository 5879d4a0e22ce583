"""Why a signed token is refused, as the token policy says it: one reading of the token decides the
401's wording and the reason a refusal is counted under (``segcast_auth_refused_total``), so the two
cannot disagree about whether a token was this server's and only ran out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.http.access.auth import refusals_key, setup_auth
from server.http.access.tokens import SIGNED_TOKEN_PREFIX, AccessPolicy, Credential, Role, SignedRefusal

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
NOW = 1_800_000_000
YEAR_S = 365 * 24 * 3600


def _policy(viewer_tokens: tuple[str, ...] = (VIEWER,)) -> AccessPolicy:
    return AccessPolicy.configure("0.0.0.0", viewer_tokens=viewer_tokens, admin_tokens=[ADMIN], environ={})


def _signed_unbound(policy: AccessPolicy, expires: int) -> str:
    """A viewer token as segcast signed them from 2026-12-03 to 12-05: with the signing key itself."""
    body = f"{SIGNED_TOKEN_PREFIX}.viewer.{expires}"
    mac = base64.urlsafe_b64encode(hmac.new(policy.signing_key, body.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{body}.{mac.decode()}"


def _forged(token: str) -> str:
    """``token`` with its signature's last characters changed."""
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def test_a_token_that_holds_is_its_credential() -> None:
    policy = _policy()
    checked = policy.check_signed(policy.sign_until(Role.ADMIN, NOW + 60), now=NOW)
    assert isinstance(checked, Credential)
    assert (checked.role, checked.expires) == (Role.ADMIN, NOW + 60)


@pytest.mark.parametrize("token", ["garbage", VIEWER, "s1.root.1800000060.c2ln", "s1.viewer.soon.c2ln", "s1.viewer.1."])
def test_a_token_without_a_signed_ones_shape_is_malformed(token: str) -> None:
    assert _policy().check_signed(token, now=NOW) is SignedRefusal.MALFORMED


def test_a_forged_token_has_a_bad_signature_and_its_expiry_is_not_read() -> None:
    """A forged token with a past expiry is told no more than one with a future expiry."""
    policy = _policy()
    for expires in (NOW - 60, NOW + 60):
        assert policy.check_signed(_forged(policy.sign_until(Role.VIEWER, expires)), now=NOW) is (
            SignedRefusal.BAD_SIGNATURE
        )


def test_a_token_of_another_server_or_of_a_token_taken_out_of_the_settings_has_a_bad_signature() -> None:
    """Neither can be told from a forged one: the root a token was minted with is signed into it, not written."""
    policy = _policy()
    minted_by_viewer = policy.sign_until(Role.VIEWER, NOW + 60, minted_by=policy.token_credential(VIEWER))
    assert _policy(viewer_tokens=()).check_signed(minted_by_viewer, now=NOW) is SignedRefusal.BAD_SIGNATURE
    other = AccessPolicy.configure("0.0.0.0", admin_tokens=[ADMIN + "-other"], environ={})
    assert policy.check_signed(other.sign_until(Role.VIEWER, NOW + 60), now=NOW) is SignedRefusal.BAD_SIGNATURE


def test_a_token_signed_with_the_key_bound_to_no_root_is_told_apart() -> None:
    policy = _policy()
    assert policy.check_signed(_signed_unbound(policy, NOW + 60), now=NOW) is SignedRefusal.UNBOUND


def test_a_token_of_this_server_past_its_expiry_has_expired() -> None:
    policy = _policy()
    assert policy.check_signed(policy.sign_until(Role.VIEWER, NOW - 1), now=NOW) is SignedRefusal.EXPIRED


def test_a_token_of_this_server_expiring_beyond_its_roles_longest_life_expires_too_late() -> None:
    policy = _policy()
    fast = policy.sign_until(Role.ADMIN, NOW + 2 * YEAR_S)  # minted while a clock ran two years fast
    assert policy.check_signed(fast, now=NOW) is SignedRefusal.EXPIRES_TOO_LATE


def test_only_a_token_of_this_server_refused_for_its_expiry_was_minted_here() -> None:
    """What the refusal count calls ``expired``: a new token is the cure, where any other token is wrong."""
    minted_here = {refusal for refusal in SignedRefusal if refusal.minted_here}
    assert minted_here == {SignedRefusal.EXPIRED, SignedRefusal.EXPIRES_TOO_LATE}


async def _refused(client: TestClient, token: str) -> str:
    """The 401's message for ``token`` sent in the address."""
    response = await client.get("/api/streams", params={"token": token})
    assert response.status == 401, await response.text()
    message: str = (await response.json())["error"]
    return message


async def test_each_refusal_is_told_and_counted_for_what_the_token_policy_found(aiohttp_client: ClientFactory) -> None:
    """Given tokens set, when a token of each kind of refusal is sent, then its 401 says what it says for
    that kind and it is counted as expired only where this server minted it and it ran out."""
    policy = _policy()
    app = web.Application()
    setup_auth(app, policy)
    client = await aiohttp_client(app)
    now = int(time.time())
    expired_at = datetime.fromtimestamp(now - 60, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    mint_again = "; mint a new one with POST /api/tokens"
    told = {
        "garbage": "a valid token is needed: send Authorization: Bearer <token>, or ?token=<signed token>",
        _forged(policy.sign_until(Role.VIEWER, now - 60)): (
            "the signed token is not valid for this server (minted by another server or an earlier segcast, "
            f"or with a token since taken out of its settings){mint_again}"
        ),
        _signed_unbound(policy, now + 60): (
            "the signed token was minted by an earlier segcast (of 2026-12-03 to 2026-12-05), whose signed "
            "tokens this one no longer takes: they were not bound to the token they were minted with, "
            f"so taking that token out of the settings could not revoke them{mint_again}"
        ),
        policy.sign_until(Role.VIEWER, now - 60): f"the signed token expired at {expired_at}{mint_again}",
    }
    for token, message in told.items():
        assert await _refused(client, token) == message
    too_late = await _refused(client, policy.sign_until(Role.ADMIN, now + 2 * YEAR_S))
    assert "later than admin tokens may last (7 days): it was minted while a clock was running fast" in too_late
    assert too_late.endswith(mint_again)
    assert app[refusals_key].by_reason["wrong"] == 3
    assert app[refusals_key].by_reason["expired"] == 2
