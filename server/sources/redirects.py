"""A camera's HTTP redirects, followed by segcast one at a time, so that ``[server] deny_networks`` holds
wherever they lead.

FFmpeg follows a redirect unchecked: a camera the API added at an allowed address that answered
"302 Location: http://169.254.169.254/..." had FFmpeg ask the cloud metadata service, at every
reconnect. So a stream held to the list (given a ``check_host``: `server.sources.network`) has FFmpeg
follow no redirect (``max_redirects=0``); where FFmpeg meets one, `followed_redirect` asks the same URL
again for its Location, checks the target's host as the URI's own host is checked, and FFmpeg opens the
target, at most `MAX_REDIRECTS` times an attempt. Each attempt starts again at the URI: a camera may
redirect elsewhere later. The URL FFmpeg ends at is asked by FFmpeg alone, so a camera serving one
client at a time is not asked twice for its stream.

The URI's user and password go only to the camera they were given for (`_carries_credentials`); a
redirect elsewhere is asked, and opened, without them.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable
from urllib.parse import SplitResult, urljoin, urlsplit

from server.sources.base import SlowRetryError
from server.sources.http_get import DEFAULT_PORTS, Deadline, redirect_location
from server.sources.uri import mask_uri

#: Redirects followed in one attempt before it is given up: cameras redirect once or twice (to a login
#: page's stream, from http to https), and each costs the camera two requests (FFmpeg's, then segcast's).
MAX_REDIRECTS = 5


def followed_redirect(
    url: str, given: str, deadline: Deadline, check_host: Callable[[str], None], trust: ssl.SSLContext | None
) -> str | None:
    """The URL that ``url``'s answer redirects to, to be opened next, or None where that answer is no
    redirect or none came by ``deadline`` (FFmpeg's own error then says what went wrong).

    ``given`` is the stream's URI without its options: the target carries its user and password only
    where it is the same camera. Raises `SlowRetryError` for a target ``check_host`` refuses (nothing is
    sent there) or one that is no HTTP(S) URL: retried slowly, as the camera may redirect elsewhere later.
    """
    try:
        location = redirect_location(url, deadline, trust)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if location is None:
        return None
    target = urlsplit(urljoin(url, location.strip()))._replace(fragment="")
    where = target.netloc.rpartition("@")[2]  # its host and port as the Location writes them: no user info
    try:
        valid = target.scheme in DEFAULT_PORTS and bool(target.hostname) and target.port != 0
    except ValueError:  # a port that is no number, or above 65535
        valid = False
    if not valid:
        raise SlowRetryError(
            f"the camera redirects to {mask_uri(target.geturl())!r}, which is no http:// or https:// URL segcast "
            "can follow: check the URL; retried slowly"
        )
    try:
        check_host(str(target.hostname))
    except Exception as exc:  # its words name the address and the list
        raise SlowRetryError(
            f"the camera redirects to {where}, which [server] deny_networks refuses ({exc}): nothing was sent "
            "there; retried slowly, as the camera may redirect elsewhere later"
        ) from None
    credentials = urlsplit(given).netloc.rpartition("@")[0]
    if credentials and _carries_credentials(urlsplit(given), target):
        where = f"{credentials}@{where}"
    return target._replace(netloc=where).geturl()


def _carries_credentials(given: SplitResult, target: SplitResult) -> bool:
    """Whether ``target`` is the camera ``given`` names, which its user and password are for: the same host
    and port by the same scheme, or the same host moved from http to https, each at its default port.

    Any other host may be anyone's, and is sent none: not those of ``given``, nor any a Location carries.
    """
    if given.hostname != target.hostname:
        return False
    given_at = (given.scheme, given.port or DEFAULT_PORTS[given.scheme])
    target_at = (target.scheme, target.port or DEFAULT_PORTS[target.scheme])
    return given_at == target_at or (given_at, target_at) == (("http", 80), ("https", 443))
