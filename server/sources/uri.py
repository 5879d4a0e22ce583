"""Reading source URIs: masking credentials and taking segcast's own options out of the fragment.

segcast's per-source options ride in the URI fragment (``rtsp://cam/live#transport=udp``) because the
fragment is the one part of a URL that is never sent to the camera: a camera's own query string
(``?channel=1&subtype=0``) passes through untouched, and no option name of ours can clash with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from server.sources.base import SourceError

MASK = "***"

#: Parameter names whose values are secrets: some cameras take credentials or tokens in the query
#: string, in ``;key=value`` path parameters, or (Dahua) in the path as ``user=..._password=...``; a
#: CDN signs a stream's URL with one (nginx secure_link's ``md5=``, Akamai's ``hdnts=`` and ``hdnea=``;
#: Wowza's ``wowzatokenhash=``, Aliyun's ``auth_key=`` and CloudFront's ``Signature=`` hold a word too).
_SECRET_WORDS = r"pass|pwd|psw|token|secret|key|auth|sig|cred|session|md5|hdnts|hdnea|access-?code"
#: Endings too short to look for anywhere in a name, but a password's at its end (VStarcam's
#: ``loginuse=admin&loginpas=...``, ``userpw``).
_SECRET_ENDINGS = r"pas|pw"
#: Whole names alone, where a longer name holding one is no secret's (``pinhole``, ``codec``): short
#: ones; ``code``, an access or authorisation code (``access_code=`` is judged by the part after its
#: '_', as a Dahua path's names are); CloudFront's ``Policy=``, the terms its ``Signature=`` signs, as
#: no part of a signed URL is shown.
_SECRET_NAMES = r"p|pin|code|policy"
#: A secret's name, as a camera reads it: percent-decoded. It holds a secret word, ends in a secret
#: ending or is a short secret name.
_SECRET_NAME = re.compile(
    rf".*(?:{_SECRET_WORDS}).*|.*(?:{_SECRET_ENDINGS})|{_SECRET_NAMES}", re.IGNORECASE | re.DOTALL
)
#: The ``name=`` of a ``name=value`` pair after a separator. The name may be percent-encoded
#: (``%74oken``, ``p%61ssword``): a camera decodes it before it reads it, so it is judged decoded.
_PARAM_NAME = re.compile(r"(?<=[?&;/_])(?P<name>(?:[A-Za-z0-9.-]|%[0-9A-Fa-f]{2})*)=")
#: What ends a pair's value: the next pair, or a '#' that starts segcast's options (``#timeout=3``);
#: any other '#' may be part of a password typed raw (``password=p#ss``), so the value runs on past it.
#: A Dahua path's value swallows the rest of the path, which hides more than the secret but never less.
_VALUE_END = re.compile(r"[&;]|#(?=[A-Za-z_]+=)")
#: ``scheme://`` at the start of a URI, where a user info may follow.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: The characters that end a URL's host.
_HOST_ENDS = re.compile(r"[/?#]")
#: The characters that end a URL's path: the start of its query or fragment.
_QUERY_STARTS = re.compile(r"[?#]")
#: An '@' in a query or fragment that is in no pair's value: in its name, or in a pair with no '='.
_AT_BEFORE_A_VALUE = re.compile(r"[?#&;][^?#&;=@]*@")
#: A URL's host (a name, an address or a bracketed IPv6 address) and its port, if any: no password.
_HOST_AND_PORT = re.compile(r"(?:\[[^\]]*\]|[^:]*)(?::[0-9]+)?")
#: What FFmpeg splits a URL into parts at, and may quote one of them alone in an error.
_URL_PARTS = re.compile(r"[@/?#:\s]")
#: Shorter secrets are not searched for in free text: every "1" of an error message would go.
MIN_SECRET_IN_TEXT = 3


def mask_uri(uri: str) -> str:
    """``uri`` with its password (or a user name standing alone, which may be a token) and
    secret-looking parameter values replaced by ``***``.

    Safe on anything, including text that is not a URI at all, so every log line, API field and error
    message about a source can go through it. It errs on hiding too much: an '@' in the path of a URI
    with a user info hides the host before it, where one in its query or fragment does not (see
    `_userinfo`).
    """
    return _masked(uri)[0]


def has_masked_secret(uri: str) -> bool:
    """Whether ``uri`` has ``***`` where `mask_uri` hides a secret: it was copied from what segcast shows."""
    return any(uri[start:stop] == MASK for start, stop in _hidden_spans(uri))


def unmask_uri(uri: str, original: str) -> str | None:
    """``uri`` with each ``***`` that `mask_uri` put in ``original`` given ``original``'s secret back.

    So a client may send back a source as the API showed it (``GET``'s ``source``) with a part changed
    (a ``#timeout=`` added) and the camera keeps its password. Each ``***`` must stand where
    ``mask_uri(original)`` has one, and everything up to the last of them, and up to the end of the
    host and port, must read as there: the same scheme, user, host, port and parameter names. A secret
    goes back only to the camera, and the user, it was given for, never to a host that only starts like
    it (``cam.evil.example``). After that, the path, the parameters and segcast's options may change,
    but for the checking of the camera's certificate (`_checks_as_strictly`): a secret is never sent
    over TLS less checked than it was given for.

    ``uri`` as it is where it has no ``***`` in a secret's place (a file named ``***.mp4`` holds none);
    None where one cannot be given back, for a caller to ask for the real secret.
    """
    masks = [(start, stop) for start, stop in _hidden_spans(uri) if uri[start:stop] == MASK]
    if not masks:
        return uri
    shown, places = _masked(original)
    if masks != places[: len(masks)] or _fixed_part(uri, masks) != _fixed_part(shown, masks):
        return None
    secrets = [original[start:stop] for start, stop in _hidden_spans(original)]
    parts: list[str] = []
    end = 0
    for (start, stop), secret in zip(masks, secrets, strict=False):
        parts += [uri[end:start], secret]
        end = stop
    unmasked = "".join(parts) + uri[end:]
    return unmasked if _checks_as_strictly(unmasked, original) else None


def _checks_as_strictly(uri: str, original: str) -> bool:
    """Whether ``uri`` has the camera's certificate checked as ``original`` does (``tls_verify``, ``ca_file``):
    without it, whoever can change a stream but not read its password could have it sent, under the
    camera's own name, to any host that answers for that name (a spoofed DNS answer)."""
    before, after = certificate_options(original), certificate_options(uri)
    return not before.checked or (after.checked and after.ca_file == before.ca_file)


@dataclass(frozen=True, slots=True)
class CertificateOptions:
    """A source URI's options for checking its server's TLS certificate, as written ("" where not given)."""

    tls_verify: str = ""
    ca_file: str = ""

    @property
    def checked(self) -> bool:
        """Whether the certificate is checked: ``tls_verify=1``, or a ``ca_file`` (which implies it)."""
        return self.tls_verify == "1" or bool(self.ca_file)


def certificate_options(uri: str) -> CertificateOptions:
    """``uri``'s certificate options, read past any other option of its fragment.

    The one reader of them: the network source checks a camera's certificate as it says
    (`server.sources.network`), and `unmask_uri` gives a secret back only to a URI it says is checked as
    strictly, so the two cannot disagree. `split_options` cannot serve the second: it refuses options a
    source kind does not know, and a URI sent back may be any source's.
    """
    options = dict(_fragment_options(uri))
    return CertificateOptions(options.get("tls_verify", ""), options.get("ca_file", ""))


def _fragment_options(uri: str) -> list[tuple[str, str]]:
    """The ``key=value`` pairs of ``uri``'s fragment, in their order: segcast's options for it."""
    return parse_qsl(uri.partition("#")[2], keep_blank_values=True)


def _fixed_part(uri: str, masks: list[tuple[int, int]]) -> str:
    """The start of ``uri`` that `unmask_uri` holds to: up to its last mask, or past its host and port."""
    scheme = _SCHEME.match(uri)
    host_end = _HOST_ENDS.search(uri, scheme.end() if scheme else 0)
    return uri[: max(masks[-1][1], len(uri) if host_end is None else host_end.start())]


def _masked(uri: str) -> tuple[str, list[tuple[int, int]]]:
    """`mask_uri`'s text, and where each ``***`` stands in it (start, end), left to right."""
    parts: list[str] = []
    places: list[tuple[int, int]] = []
    shown = 0
    end = 0
    for start, stop in _hidden_spans(uri):
        shown += start - end
        places.append((shown, shown + len(MASK)))
        shown += len(MASK)
        parts += [uri[end:start], MASK]
        end = stop
    return "".join(parts) + uri[end:], places


def _hidden_spans(uri: str) -> list[tuple[int, int]]:
    """Where `mask_uri` hides ``uri``'s secrets (start, end), left to right; spans that overlap (a
    password holding "pw=") as one."""
    hidden = list(_secret_values(uri))
    found = _userinfo(uri)
    if found is not None:
        start, userinfo = found
        user, colon, _ = userinfo.partition(":")
        # A raw '/', '?' or '#' in the user name: where it ends cannot be told, so all of it goes.
        shown_user = len(user) + 1 if colon and not _HOST_ENDS.search(user) else 0
        hidden.append((start + shown_user, start + len(userinfo)))
    spans: list[tuple[int, int]] = []
    end = 0
    for start, stop in sorted(hidden):
        if stop <= end:
            continue  # inside the span before
        if start < end:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((start, stop))
        end = stop
    return spans


def has_raw_userinfo(uri: str) -> bool:
    """Whether ``uri``'s user name or password holds a raw '?' or '#', which must be percent-encoded.

    Every URL reader ends the host at the first '/', '?' or '#': when that is a '?' or '#' with an '@'
    after it, the host it reads is a piece of the password (``rtsp://adm:p@ss?Zq7@cam/`` connects to
    ``ss``). A '/' first is a path, whose query may hold an '@' (``rtsp://cam:554/live?mail=a@b``).
    """
    found = _userinfo(uri)
    if found is None:
        return False
    first_end = _HOST_ENDS.search(found[1])
    return first_end is not None and first_end.group() != "/"


def mask_text(text: str, uri: str) -> str:
    """``text`` (typically an FFmpeg error that quotes the URL, or a part of it) with ``uri``'s secrets masked."""
    text = text.replace(uri, mask_uri(uri))
    for secret in sorted(_secrets(uri), key=len, reverse=True):
        if len(secret) >= MIN_SECRET_IN_TEXT:
            text = text.replace(secret, MASK)
    return text


def _userinfo(uri: str) -> tuple[int, str] | None:
    """Where ``uri``'s user info starts and what it is, read so that it hides too much, never too little.

    It runs from just after ``scheme://`` (or from the start, for a camera's address typed without its
    scheme: ``admin:S3cret@192.168.1.10/stream1``) to the *last* '@' in the URI: a password typed with
    a raw '@', '/', '?' or '#' holds every character up to it (``adm:p@ss?Zq7@cam``, ``u:p@ss/x@cam``),
    where FFmpeg stops at the last '@' before the first '/', '?' or '#'. So an '@' in the path of a URI
    with a user info hides the host too.

    One exception hides just the password in the common case (``u:pw@cam/live?mail=a@b.com``): where
    the host FFmpeg reads holds an '@' and ends at a '/', and every '@' from the query or fragment after
    that path on stands in the value of a ``name=value``, the user info ends at the last '@' before the
    query. That still holds FFmpeg's password, the one the camera gets, and any typed with a raw '@' or
    '/'. Where those are the only '@'s and a host and port come before the path, there is no user info
    (``cam:554/live?mail=a@b.com``: read to the last '@', the port and path were hidden as a password,
    and ``b.com`` shown as the host). Only a password typed with a raw '/', then a raw '?' or '#', then
    a '=' and an '@' would show (in part, or whole after a user name and digits: ``u:12/?a=b@cam/x?m=a@b``),
    read as a path and a query, as FFmpeg reads it: a '?' or '#' in a user info must be percent-encoded.

    Where FFmpeg reads a user info there always is one, never shorter than FFmpeg's (a token before an
    '@' in the path, ``tok@cam/a@b``, hides). Elsewhere no user info: no '@'; a '/' in the user name
    (the '@' is in a path: ``rtsp://cam/live?x=a@b``, ``/videos/me@home.mp4``); or a query straight
    after a host with no ':' (``http://cam.local?mail=a@b.com``), where no password can be.
    """
    scheme = _SCHEME.match(uri)
    start = scheme.end() if scheme else 0
    host_end = _HOST_ENDS.search(uri, start)
    authority_end = len(uri) if host_end is None else host_end.start()
    # An '@' inside a secret parameter's value in the path or query is that secret's, hidden with it.
    values = [(a, b) for a, b in _secret_values(uri) if a > authority_end]
    ats = _ats_outside(uri, start, values)
    if not ats:
        return None
    at = ats[-1]
    ffmpeg_reads_userinfo = ats[0] < authority_end
    if host_end is not None and host_end.group() == "/":
        query = _QUERY_STARTS.search(uri, authority_end)
        if query is not None and query.start() < at and _AT_BEFORE_A_VALUE.search(uri, query.start()) is None:
            if ffmpeg_reads_userinfo:
                at = max(i for i in ats if i < query.start())
            elif (
                ats[0] > query.start()
                and "/" not in uri[ats[0] :]  # not ``@cam/live``: a password's '/' and '?' read as a path
                and _HOST_AND_PORT.fullmatch(uri, start, authority_end)
            ):
                return None
    userinfo = uri[start:at]
    if ffmpeg_reads_userinfo:
        return start, userinfo
    if "/" in userinfo.partition(":")[0]:
        return None
    host, query_mark, after = userinfo.partition("?")
    if query_mark and not _HOST_ENDS.search(host) and ":" not in host and "=" in after:
        return None
    return start, userinfo


def _ats_outside(uri: str, start: int, spans: list[tuple[int, int]]) -> list[int]:
    """Where the '@'s of ``uri`` from ``start`` on lie, but for those inside one of ``spans``.

    ``spans`` are ordered and do not overlap (`_secret_values` yields them so), so both are walked once
    together: checking each '@' against every span took time growing with their product, and a URI of
    15,000 ``p=@&`` pairs (60 kB) held the event loop for seven seconds.
    """
    ats: list[int] = []
    spans_after = iter(spans)
    span = next(spans_after, None)
    at = uri.find("@", start)
    while at != -1:
        while span is not None and span[1] <= at:
            span = next(spans_after, None)
        if span is None or at < span[0]:
            ats.append(at)
        at = uri.find("@", at + 1)
    return ats


def _secret_values(uri: str) -> Iterator[tuple[int, int]]:
    """Where the values of ``uri``'s secret parameters lie (start, end), left to right.

    A pair whose name is no secret's is passed over by its name alone: its value may hold the next
    pair (a Dahua path's ``user=admin_password=...``).
    """
    position = 0
    while (name := _PARAM_NAME.search(uri, position)) is not None:
        position = name.end()
        if _SECRET_NAME.fullmatch(unquote(name["name"])):
            end = _VALUE_END.search(uri, position)
            start, position = position, len(uri) if end is None else end.start()
            yield start, position


def _secrets(uri: str) -> list[str]:
    """The secret parts of ``uri`` as they are written in it, and percent-decoded, then the parts of
    each that a URL reader splits it into: FFmpeg quotes the host or path it read, which may be a
    piece of a password typed with a raw '@', '/', '?', '#' or ':'."""
    found = [uri[start:stop] for start, stop in _secret_values(uri)]
    userinfo = _userinfo(uri)
    if userinfo is not None:
        user, colon, password = userinfo[1].partition(":")
        found.append(password if colon and not _HOST_ENDS.search(user) else userinfo[1])
    forms = list(dict.fromkeys(form for secret in found if secret for form in (secret, unquote(secret))))
    parts = [part for form in forms for part in _URL_PARTS.split(form) if part not in forms]
    return forms + parts


def split_options(uri: str, known: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Split ``uri#key=value&...`` into the URI to open and segcast's options for it.

    ``known`` maps each option this source kind accepts to its default; an unknown key is a
    `SourceError` naming the known ones, so a typo is reported instead of silently ignored. The key is
    named only where the masked URI shows it: a "fragment" may be the end of a password (``p#ss@cam``).
    """
    options = dict(known)
    for key, value in _fragment_options(uri):
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            masked = mask_uri(uri)
            shown = repr(key) if key in masked.partition("#")[2] else MASK
            raise SourceError(f"unknown option {shown} in {masked!r}; options for this source: {names}")
        options[key] = value
    return uri.partition("#")[0], options


def positive_float(options: dict[str, str], key: str, uri: str, maximum: float) -> float:
    """Option ``key`` as a number above zero and at most ``maximum``, or a `SourceError` that names it.

    The bound keeps out ``inf`` and its like: an infinite rate makes every frame's interval zero, an
    infinite time-out a reader that never gives up and never exits.
    """
    try:
        value = float(options[key])
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise SourceError(
            f"option {key}={options[key]!r} in {mask_uri(uri)!r} must be a number above 0 and at most {maximum:g}"
        )
    return value
