"""What answers at the addresses a split names, and which cameras a running node runs, as it says itself.

A node of an earlier split counts as running where segcast answers at its address, or something accepts
connections there and gives no answer in time (a node whose event loop is blocked does that: taken for
nothing there, its cameras would be given to another node while it runs them). Another program there is
no node (`answer_at`): the node cannot listen at its port while that program holds it.

A split reads which cameras each node runs from the node's file, but a node keeps its streams in
memory: one added through its API without ``?persist=1`` runs in no file, and a restart from the
file drops it. So the split asks each node of the earlier split that answers: ``/api/streams`` names
them, and ``/healthz`` says how many streams it runs, to whoever holds one of its tokens where it has any
(a node behind an entrance others reach has them: ``[auth] required = true``), to anyone where it has
none; its ``/healthz`` tells anyone that it is segcast. Where a node answers ``/healthz`` but will not name
its cameras, that is said with why, never guessed; a node that gives no answer at all is left out
(nothing can be told of it); neither stops a split.

Plain ``http.client``, one request at a time per node and the nodes asked side by side: this runs in
``segcast split``, a short command with no event loop, and a node too busy to answer in time costs
one `HEALTH_PROBE_S` whatever the number of nodes.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.deploy.entrance import FLEET_MAP_PATH

if TYPE_CHECKING:
    from server.deploy.split import EarlierNode

#: How long a node of an earlier split has to accept a connection to count as running.
NODE_PROBE_S = 1.0
#: How long each step of asking what answers at an address may take: a busy box is slow.
HEALTH_PROBE_S = 5.0
#: The most of a ``/healthz`` answer read to tell segcast from the entrance: segcast's is a few lines of JSON.
HEALTH_PROBE_MAX_BYTES = 65536
#: The most of a node's ``/api/streams`` read: a few kB a camera with its zones and lines, 64 cameras a node.
STREAMS_ANSWER_MAX_BYTES = 16 * 1024 * 1024
#: How long a running entrance has to give its map (`served_map`): it answers at once (after asking a
#: node whether the token holds, a few ms), and the split's last lines wait on it.
ENTRANCE_MAP_PROBE_S = 2.0
#: The most of an entrance's map read: a camera id and its quotes, 64 cameras on each of 64 nodes.
FLEET_MAP_MAX_BYTES = 1024 * 1024


class Answer(Enum):
    """What answers at an address a split names (`answer_at`)."""

    NOTHING = "nothing"  # nothing accepts connections there
    SEGCAST = "segcast"  # segcast's /healthz
    ENTRANCE = "entrance"  # a split's entrance: its /healthz is a plain ok
    SILENT = "silent"  # it accepts connections and gives no answer in time: a node too busy to, as likely as not
    STRANGER = "stranger"  # another program


@dataclass(frozen=True, slots=True)
class Answered:
    """What answers at an address (``kind``), and ``said``, the words a message gives it ("a server that is
    not segcast")."""

    kind: Answer
    said: str

    @property
    def runs_a_node(self) -> bool:
        """Whether a node of an earlier split at this address counts as running (module doc): segcast
        answers there, or something gives no answer in time, as a node whose event loop is blocked."""
        return self.kind in (Answer.SEGCAST, Answer.SILENT)


@dataclass(frozen=True, slots=True)
class NodeStreams:
    """What a running node says it runs: ``count`` streams (its ``/healthz``; None where it has tokens and
    took none it was asked with, as it tells that to a token's holder alone), named in ``ids`` where
    its ``/api/streams`` told them (None: ``unnamed_because`` says why not). ``never_saved``: those of
    ``ids`` no file can hold (a browser's camera, a ``--source`` flag), which no ``?persist=1`` saves.
    ``config_read_at``: when it last read its file (at its start) or saved it, in Unix seconds (None: an
    older segcast's ``/healthz`` does not say, nor one with tokens without one it took). ``took``: the token
    its ``/api/streams`` took (None: asked with none), ``refused``: those it refused first; nodes of one fleet
    share their tokens, so a token one node takes and another refuses is worth saying (never the token
    itself)."""

    count: int | None
    ids: tuple[str, ...] | None = None
    unnamed_because: str = ""
    never_saved: frozenset[str] = frozenset()
    config_read_at: float | None = None
    took: str | None = field(default=None, repr=False)
    refused: frozenset[str] = field(default=frozenset(), repr=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A node's ``/api/streams`` answer to the first token it did not refuse (``token``; None: asked with
    none), after refusing ``refused``; a 401 with no ``token`` where it refused every one."""

    status: int
    body: bytes
    token: str | None
    refused: tuple[str, ...]


def accepts(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection at ``host``:``port`` within `NODE_PROBE_S`."""
    try:
        with socket.create_connection((host, port), timeout=NODE_PROBE_S):
            return True
    except OSError:
        return False


def what_answers(host: str, port: int, tls: bool) -> str | None:
    """What answers at ``host``:``port`` (`answer_at`) in words: None for nothing listening or a split's
    entrance, ``"segcast"`` for segcast, else what was seen."""
    answered = answer_at(host, port, tls)
    return None if answered.kind in (Answer.NOTHING, Answer.ENTRANCE) else answered.said


def answer_at(host: str, port: int, tls: bool = False) -> Answered:
    """What answers ``GET /healthz`` at ``host``:``port`` (over HTTPS for ``tls``): a split's entrance
    answers a plain ``ok``, segcast its JSON (``{"status": "ok", "v": 1}`` at least, whatever the tokens,
    starting or not). A busy box may take a while: `HEALTH_PROBE_S` for each step. The
    certificate is not checked: nothing is sent, only the answer read."""
    if not accepts(host, port):
        return Answered(Answer.NOTHING, "nothing")
    try:
        _, text = _get(host, port, "/healthz", HEALTH_PROBE_MAX_BYTES, tls=tls)
    except TimeoutError:
        return Answered(Answer.SILENT, f"something accepts connections but gives no answer within {HEALTH_PROBE_S:g} s")
    except (OSError, http.client.HTTPException) as exc:
        said = f"something that does not answer HTTP{'S' if tls else ''} ({exc or type(exc).__name__})"
        return Answered(Answer.STRANGER, said)
    if text.strip() == b"ok":
        return Answered(Answer.ENTRANCE, "the entrance of a split")
    if _is_segcast_health(text):
        return Answered(Answer.SEGCAST, "segcast")
    return Answered(Answer.STRANGER, "a server that is not segcast")


def answers_at(addresses: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Answered]:
    """`answer_at` each of ``addresses`` (a node's: plain HTTP), all at once: a split names at most 64
    nodes, and one that gives no answer costs one `HEALTH_PROBE_S` whatever their number."""
    asked = list(dict.fromkeys(addresses))
    if not asked:
        return {}
    with ThreadPoolExecutor(len(asked), thread_name_prefix="split-probe") as pool:
        return dict(zip(asked, pool.map(lambda address: answer_at(*address), asked), strict=True))


def served_map(host: str, port: int, tls: bool, tokens: Sequence[str]) -> tuple[int, object] | None:
    """The status and JSON (None: none) of the running entrance's answer at ``host``:``port`` to
    `FLEET_MAP_PATH`, asked with each of ``tokens`` in turn until one is not refused (its map needs
    what a node's ``/api/streams`` needs); None where nothing answers within `ENTRANCE_MAP_PROBE_S`."""
    try:
        answer = _first_taken(
            host, port, tokens, FLEET_MAP_PATH, FLEET_MAP_MAX_BYTES, tls=tls, timeout=ENTRANCE_MAP_PROBE_S
        )
    except (OSError, http.client.HTTPException):
        return None
    return answer.status, _json(answer.body)


def unread_file(path: Path, said: NodeStreams) -> bool:
    """Whether the file at ``path`` changed after its running node (which ``said`` what it runs) last read
    or saved it: the node runs the settings it read, and refuses its API's next ``?persist=1`` (a save
    never overwrites a file changed since). Not a file the node itself saved since its start (a camera
    moved through its API, as documented). False where the node does not say (an older segcast) or the
    file cannot be looked at: nothing can be told."""
    if said.config_read_at is None:
        return False
    try:
        return path.stat().st_mtime > said.config_read_at
    except OSError:
        return False


def what_each_runs(running: Iterable[EarlierNode]) -> dict[Path, NodeStreams]:
    """What each of the ``running`` nodes of an earlier split runs, by its file's path; a node that
    gives no segcast answer within `HEALTH_PROBE_S` is left out (nothing can be told of it)."""
    asked = [(node.path, *node.address, node.tokens) for node in running if node.address is not None]
    if not asked:
        return {}
    # Every node at once (a split names at most 64), each question mostly waiting on its node.
    with ThreadPoolExecutor(len(asked), thread_name_prefix="split-ask") as pool:
        answers = pool.map(lambda one: streams_of(one[1], one[2], one[3]), asked)
        return {one[0]: streams for one, streams in zip(asked, answers, strict=True) if streams is not None}


def streams_of(host: str, port: int, tokens: Sequence[str]) -> NodeStreams | None:
    """What the node at ``host``:``port`` runs, its ``/api/streams`` asked with each of ``tokens`` in
    turn until one is taken (with none where there are none: an open node needs none), and its ``/healthz``
    with that one where it tells no count without; None where its ``/healthz`` gives no segcast answer. No
    token is sent before that answer: whatever else holds the port is never shown one."""
    try:
        status, told = _get(host, port, "/healthz", HEALTH_PROBE_MAX_BYTES)
    except (OSError, http.client.HTTPException):
        return None
    if status != 200 or not _is_segcast_health(told):
        return None
    try:
        answer = _first_taken(host, port, tokens)
    except TimeoutError:
        because = f"its /api/streams gave no answer within {HEALTH_PROBE_S:g} s"
        return NodeStreams(_streams_count(told), unnamed_because=because, config_read_at=_config_read_at(told))
    except (OSError, http.client.HTTPException) as exc:
        because = f"its /api/streams could not be read ({exc or type(exc).__name__})"
        return NodeStreams(_streams_count(told), unnamed_because=because, config_read_at=_config_read_at(told))
    if answer.token is not None and _streams_count(told) is None:
        told = _health_told(host, port, answer.token, told)
    count, config_read_at = _streams_count(told), _config_read_at(told)
    refused = frozenset(answer.refused)
    if answer.status == 401:
        because = _refused(len(tokens))
        return NodeStreams(count, unnamed_because=because, config_read_at=config_read_at, refused=refused)
    streams = _listed(answer.body) if answer.status == 200 else None
    if streams is None:
        because = f"its /api/streams answered {answer.status} without a list of streams"
        return NodeStreams(count, unnamed_because=because, config_read_at=config_read_at, refused=refused)
    ids = tuple(str(stream["id"]) for stream in streams)
    never_saved = frozenset(str(stream["id"]) for stream in streams if stream.get("persistable") is False)
    return NodeStreams(
        count, ids, never_saved=never_saved, config_read_at=config_read_at, took=answer.token, refused=refused
    )


def _health_told(host: str, port: int, token: str, told: bytes) -> bytes:
    """The node's ``/healthz`` answer to ``token`` (one its ``/api/streams`` took): a node with tokens tells
    its count and when it read its file to a token's holder alone. ``told``, its answer without one, where
    it gives no answer now: the node is left with no count, as it would have been without a token."""
    try:
        _, text = _get(host, port, "/healthz", HEALTH_PROBE_MAX_BYTES, token=token)
    except (OSError, http.client.HTTPException):
        return told
    return text


def _first_taken(
    host: str,
    port: int,
    tokens: Sequence[str],
    path: str = "/api/streams",
    max_bytes: int = STREAMS_ANSWER_MAX_BYTES,
    tls: bool = False,
    timeout: float | None = None,
) -> _Answer:
    """``GET path`` with each of ``tokens`` until one is not refused (401); the last answer. A token with a
    line break is never asked with: no HTTP header can carry it, so no node takes it."""
    refused: list[str] = []
    asked: list[str | None] = [t for t in tokens if "\r" not in t and "\n" not in t]
    for token in asked or [None]:
        status, body = _get(host, port, path, max_bytes, tls=tls, token=token, timeout=timeout)
        if status != 401:
            return _Answer(status, body, token, tuple(refused))
        if token is not None:
            refused.append(token)
    return _Answer(401, b"", None, tuple(refused))


def _refused(tokens: int) -> str:
    """Why a node's ``/api/streams`` refused every token it was asked with."""
    if not tokens:
        return (
            "its /api/streams needs a token, and neither its file nor $SEGCAST_ADMIN_TOKENS or "
            "$SEGCAST_VIEWER_TOKENS here gives one: set one of its tokens there to have them named"
        )
    return (
        f"its /api/streams took none of the {tokens} token{'s' if tokens > 1 else ''} its file and "
        "$SEGCAST_ADMIN_TOKENS / $SEGCAST_VIEWER_TOKENS here give: set one of its tokens there to have them named"
    )


def _get(
    host: str,
    port: int,
    path: str,
    max_bytes: int,
    tls: bool = False,
    token: str | None = None,
    timeout: float | None = None,
) -> tuple[int, bytes]:
    """The status and (at most ``max_bytes`` of the) body of ``GET path``, ``timeout`` (by default
    `HEALTH_PROBE_S`) for each step; ``token`` as a bearer. Over HTTPS the certificate is not checked: only
    an answer is read."""
    each_step_s = HEALTH_PROBE_S if timeout is None else timeout
    connection: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=each_step_s, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=each_step_s)
    # As bytes: http.client would encode a str as Latin-1, where the node reads UTF-8 (a token "schlüssel"
    # would be refused) or cannot encode it at all ("токен" would raise).
    headers = {} if token is None else {"Authorization": b"Bearer " + token.encode("utf-8")}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(max_bytes)
    finally:
        connection.close()


def _is_segcast_health(text: bytes) -> bool:
    """Whether ``text`` is segcast's ``/healthz`` answer: a JSON object whose ``status`` is ``ok`` or
    ``failing`` and whose ``v`` (the protocol's version) is an integer: what segcast tells anyone, tokens or not."""
    body = _json(text)
    if not isinstance(body, dict) or body.get("status") not in ("ok", "failing"):
        return False
    version = body.get("v")
    return isinstance(version, int) and not isinstance(version, bool)


def _streams_count(text: bytes) -> int | None:
    """The stream count of segcast's ``/healthz`` answer (``{"status": ..., "streams": 3, ...}``), else None."""
    body = _json(text)
    count = body.get("streams") if isinstance(body, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _config_read_at(text: bytes) -> float | None:
    """When the node last read or saved its file, as segcast's ``/healthz`` says (``"config_read_at":
    1767225600.5``), else None."""
    body = _json(text)
    read_at = body.get("config_read_at") if isinstance(body, dict) else None
    return float(read_at) if isinstance(read_at, int | float) and not isinstance(read_at, bool) else None


def _listed(text: bytes) -> list[dict[str, Any]] | None:
    """The streams of segcast's ``/api/streams`` answer (``{"v": 1, "streams": [{"id": ...}, ...]}``), else None."""
    body = _json(text)
    streams = body.get("streams") if isinstance(body, dict) else None
    if not isinstance(streams, list) or not all(isinstance(s, dict) and "id" in s for s in streams):
        return None
    return streams


def _json(text: bytes) -> object:
    try:
        parsed: object = json.loads(text)
    except ValueError:  # UnicodeDecodeError is one
        return None
    return parsed
