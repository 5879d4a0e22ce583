"""Talking to a Triton server: its address in ``--model``, and one request over gRPC or HTTP.

Every call has a wall-clock deadline and every failure comes out as one of two exceptions, so the
inference thread never hangs on a network and never sees a client library's own error types:
`TritonUnavailable` (no answer in time, connection refused or reset, an answer that is not Triton's,
`TritonFailed`: the server failed the request on its side, or answered it without an output asked
for, or `TritonModelMissing`: the server has no such model now; worth retrying) and `TritonRefused`
(the server answered no because of the request: an input it cannot take).

gRPC and HTTP are classified alike, by the Triton error behind the status: INVALID_ARGUMENT,
ALREADY_EXISTS, UNIMPLEMENTED (HTTP 400, 409, 501 and other 4xx) are the request's fault; NOT_FOUND
(HTTP 404 with Triton's JSON error) is a model Triton does not serve now (never loaded, unloaded, or
being replaced), and so is UNAVAILABLE (HTTP 503) saying "Request for unknown model", Triton's answer
to a request pinned to a version it no longer serves; INTERNAL and UNKNOWN (HTTP 500) are the
server's (a crashed backend stub, CUDA out of memory); UNAVAILABLE, RESOURCE_EXHAUSTED, CANCELLED
(HTTP 502, 503, 504, 429) are a server that is not there or too busy. An HTTP error answer without
Triton's JSON (an empty 404 of a proxy or default backend, an HTML page) is not Triton's at all, and
nor is a gRPC one with an HTTP/2 status and no gRPC status (a proxy's 404, or its 502 for Triton down).

gRPC enforces a call's deadline itself. The HTTP client's time-outs bound each read, not the call, so
a server or proxy that trickles its answer a byte at a time would hold the call for ever: at the
deadline the transport's one watcher thread (`DeadlineWatcher`) shuts the call's connections under
it, as `Transport.close` does, and the call fails as `TritonTimeout`.

Requests go in the clear and carry no credentials: ``grpcs://``, ``https://`` and a user name or
password in the URL are refused at start rather than quietly sent without them (or the password
printed). Put nodes and Triton on a network of their own, or behind a TLS tunnel.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import logging
import math
import re
import socket
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from server.inference.backend import InferenceRefused
from server.inference.models import ModelError
from server.sources.uri import mask_uri
from server.triton.deadlines import DeadlineWatcher

log = logging.getLogger(__name__)

SCHEMES = ("grpc", "http")
#: HTTP clients (each with its connection) kept open at once, one per time-out in use (`_HttpTransport`).
HTTP_CLIENTS_KEPT = 3
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
DEFAULT_METRICS_PORT = 8002  # Triton's /metrics, in Prometheus text over HTTP/1.1
#: Schemes that would need TLS, which segcast does not speak to Triton, and the plain one to use instead.
TLS_SCHEMES = {"grpcs": "grpc", "https": "http"}
#: gRPC status codes of a server that is not there or too busy, and of one that failed on its own
#: side; every other code (INVALID_ARGUMENT, ...) but NOT_FOUND is the request's fault.
GRPC_UNAVAILABLE = frozenset({"UNAVAILABLE", "CANCELLED", "RESOURCE_EXHAUSTED"})
GRPC_FAILED = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "ABORTED"})
#: Triton's status, over gRPC and HTTP, for a model it does not serve now ("Request for unknown model:
#: 'M' has no available versions", or "is not found").
GRPC_MODEL_MISSING = "NOT_FOUND"
HTTP_MODEL_MISSING = 404
#: How Triton begins its answer to a request for a model, or a model version, it does not serve now.
#: For a request pinned to a version no longer loaded ("'m' version 1 is not at ready state": a newer
#: version replaced it) the status is UNAVAILABLE (HTTP 503), not NOT_FOUND: the model is missing all
#: the same, an outage said so (not "unreachable"), after which the node reads the model again.
_UNKNOWN_MODEL = "Request for unknown model"
#: HTTP statuses of the same two kinds (Triton answers INTERNAL with 500, UNAVAILABLE with 503, and
#: an invalid argument with 400; 501 is its UNSUPPORTED, gRPC's UNIMPLEMENTED: the request's fault).
HTTP_UNAVAILABLE = frozenset({408, 429, 502, 503, 504})
HTTP_REFUSED_5XX = frozenset({501})
#: How tritonclient's HTTP client says an error answer was not Triton's JSON.
_NOT_JSON_ERROR = "an exception occurred in the client while decoding the response"
#: And how it says an error answer had no body at all (Triton's always carry a JSON error).
_EMPTY_ERROR = "client received an empty response from the server"
#: How gRPC says it connected but the server closed the connection without speaking HTTP/2, as an
#: HTTP/1 server (Triton's HTTP or metrics port) does: "failed to connect to all addresses; last
#: error: UNAVAILABLE: ipv4:127.0.0.1:8000: Socket closed".
_NO_CONNECTION = "failed to connect to all addresses"
_NOT_HTTP2 = "Socket closed"
#: How gRPC reports a server that does not speak HTTP/2, and one that answered it in HTTP/1.x.
_NOT_GRPC, _HTTP1_SERVER = "Failed parsing HTTP/2", "http1.x server"
#: How gRPC reports an HTTP/2 answer without a gRPC status, as a proxy's own (nginx ``return 404``, or
#: 502 for an upstream down) is; gRPC turns its HTTP status into a code (404 UNIMPLEMENTED, 502
#: UNAVAILABLE) that would pass for Triton's word on the request.
_HTTP2_STATUS = re.compile(r"Received http2 header with status: (\d+)")
METRICS_SNIFF_BYTES = 64  # enough of an answer to see Prometheus text's first "# HELP" or "# TYPE"


class TritonUnavailable(Exception):
    """The server could not be reached or did not answer in time; a later attempt may succeed."""


class TritonTimeout(TritonUnavailable):
    """No answer before the call's deadline."""


class TritonFailed(TritonUnavailable):
    """The server answered with an error of its own (INTERNAL, HTTP 500): not the request's fault."""


class TritonModelMissing(TritonUnavailable):
    """The server answered that it does not serve the model now: never loaded, still loading, unloaded,
    or being replaced, or a name it does not have at all (the repository index tells which)."""


class TritonRefused(InferenceRefused):
    """The server answered, and said no because of the request itself."""


@dataclass(frozen=True, slots=True)
class RepositoryModel:
    """One entry of Triton's repository index: a model version in its repository, loaded or not."""

    name: str
    version: str  # "" where the index names none
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE; "" for a model Triton never tried to load
    reason: str  # why it is in that state ("unloaded", a load error), "" if Triton gives none


@dataclass(frozen=True, slots=True)
class TritonEndpoint:
    """``grpc://HOST:PORT/MODEL`` or ``http://HOST:PORT/MODEL``: where a model is served, and by what."""

    scheme: str
    address: str  # host:port, as the client libraries take it
    model: str

    @classmethod
    def parse(cls, spec: str) -> TritonEndpoint | None:
        """The endpoint ``spec`` names, None if it is not a Triton URL; `ModelError` if it is a broken one
        or asks for what segcast does not do (TLS, credentials). No message repeats a password."""
        parts = urlsplit(spec)
        if parts.scheme not in (*SCHEMES, *TLS_SCHEMES):
            return None
        shown = mask_uri(spec)
        if not parts.netloc:  # "grpc:/host:8001/m": no file is named so, and taken for one it said "no such file"
            raise ModelError(f"--model {shown}: did you mean {parts.scheme}://HOST:PORT/MODEL, with two slashes?")
        if parts.scheme in TLS_SCHEMES:
            plain = TLS_SCHEMES[parts.scheme]
            downloads = " (and downloads no models: give a local file)" if plain == "http" else ""
            raise ModelError(
                f"--model {shown}: segcast talks to Triton without TLS{downloads}; use "
                f"{plain}://HOST:PORT/MODEL on a trusted network or through a TLS tunnel"
            )
        if "@" in parts.netloc:
            raise ModelError(
                f"--model {shown}: segcast sends Triton no credentials; drop the user name and password and "
                f"keep Triton on a trusted network"
            )
        if parts.query or parts.fragment:
            raise ModelError(f"--model {shown}: expected {parts.scheme}://HOST:PORT/MODEL, without ?query or #fragment")
        model = parts.path.strip("/")
        if not model or "/" in model:
            raise ModelError(f"--model {spec}: expected {parts.scheme}://HOST:PORT/MODEL with one model name")
        try:
            port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ModelError(f"--model {spec}: the port is not a number from 1 to 65535")
        if not parts.hostname:
            raise ModelError(f"--model {spec}: no host name")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(parts.scheme, f"{host}:{port}", model)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}/{self.model}"


class Transport(Protocol):
    """One protocol's client for one server; not thread-safe, owned by a `TritonModel`'s requester thread.

    ``timeout_s`` bounds the call: for a request, what is left of its batch's deadline."""

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        """The model's configuration as JSON (Triton's ``ModelConfig``)."""
        ...

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float, version: str = ""
    ) -> list[np.ndarray]:
        """Run ``batch`` through ``model`` as one request; the named outputs, in that order. ``version``
        pins the request to that version of the model (`ServedModel.version`: the one whose description
        the node read), "" leaves it to the server (its highest version loaded). A pinned version no
        longer loaded is `TritonModelMissing`."""
        ...

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        """Every model in the server's repository, loaded or not, with its state: what tells a model
        still loading, or unloaded, from one the server does not have (both are NOT_FOUND to the
        other calls). A server that restricts its repository API (``--grpc-restricted-protocol``,
        ``--http-restricted-api``) refuses it without the header: `TritonUnavailable` over gRPC,
        `TritonRefused` over HTTP."""
        ...

    def server_live(self, timeout_s: float) -> bool:
        """Whether the server says it is live. Once it has begun to shut down (when it unloads its models
        and answers for them as for a model unloaded on a running server) it raises `TritonUnavailable`
        ("Server exiting" over gRPC; HTTP's port is closed first); false alone tells little, as HTTP's
        client reads a restricted health API's 403 as false. Liveness, not readiness: Triton's default
        strict readiness is false too while any model of its is loading or failed to load."""
        ...

    def close(self) -> None:
        """From any thread: a call in progress on another thread ends at once, failing as
        `TritonUnavailable`; the transport is not used again."""
        ...


def require_client(spec: str) -> None:
    """Refuse before anything else when tritonclient is missing: ultralytics would pip-install it."""
    for module in ("tritonclient.grpc", "tritonclient.http"):
        if importlib.util.find_spec("tritonclient") is None or importlib.util.find_spec(module) is None:
            raise ModelError(f"--model {spec}: needs tritonclient; install it with pip install '.[triton]'")


def open_transport(endpoint: TritonEndpoint, connect_timeout_s: float) -> Transport:
    if endpoint.scheme == "grpc":
        return _GrpcTransport(endpoint.address)
    return _HttpTransport(endpoint.address, connect_timeout_s)


class _GrpcTransport:
    def __init__(self, address: str) -> None:
        import tritonclient.grpc as grpcclient

        self._address = address
        self._lib = grpcclient
        self._client = grpcclient.InferenceServerClient(url=address, verbose=False)

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        reply = self._call(self._client.get_model_config, model, as_json=True, client_timeout=timeout_s)
        config: dict[str, Any] = reply["config"]
        return config

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float, version: str = ""
    ) -> list[np.ndarray]:
        request = self._lib.InferInput(input_name, list(batch.shape), _type_name(batch))
        request.set_data_from_numpy(batch)
        wanted = [self._lib.InferRequestedOutput(name) for name in outputs]
        reply = self._call(
            self._client.infer, model, [request], model_version=version, outputs=wanted, client_timeout=timeout_s
        )
        return _outputs(reply, outputs)

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        reply = self._call(self._client.get_model_repository_index, as_json=True, client_timeout=timeout_s)
        return _repository_models(reply.get("models", []))

    def server_live(self, timeout_s: float) -> bool:
        live: bool = self._call(self._client.is_server_live, client_timeout=timeout_s)
        return live

    def close(self) -> None:
        self._client.close()  # closing the channel cancels its calls in progress, from any thread

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            code = str(exc.status() or "").removeprefix("StatusCode.")  # as tritonclient gives grpc.StatusCode
            if code == "DEADLINE_EXCEEDED":
                raise TritonTimeout(f"not answering (nothing within {kwargs['client_timeout']:.3g} s)") from None
            text = _short(exc)
            if status := _HTTP2_STATUS.search(text):  # an HTTP/2 answer without a gRPC status: a proxy's
                raise TritonUnavailable(
                    f"not a Triton gRPC endpoint (HTTP/2 status {status.group(1)}): a proxy in front of Triton?"
                ) from None
            if _NOT_GRPC in text:  # gRPC's parser words, then the raw bytes: the hint says more
                hint = _port_hint(self._address, "HTTP")
                if _HTTP1_SERVER in text:  # "... (Trying to connect an http1.x server (HTTP status 400))"
                    raise TritonUnavailable(f"it answers HTTP/1.1, not gRPC: an http:// endpoint? {hint}") from None
                raise TritonUnavailable(f"its answer is not gRPC: {hint}") from None
            if code in GRPC_UNAVAILABLE:
                if _UNKNOWN_MODEL in text:  # a pinned version no longer loaded
                    raise TritonModelMissing(text) from None
                # gRPC says "failed to connect to all addresses; last error: ...: Connection refused"
                if "Connection refused" in text:
                    raise TritonUnavailable("connection refused") from None
                if _NOT_HTTP2 in text and _NO_CONNECTION in text:  # a server that does not speak gRPC
                    hint = _port_hint(self._address, "HTTP")
                    raise TritonUnavailable(f"it closed the connection without speaking gRPC: {hint}") from None
                raise TritonUnavailable(text) from None
            if code in GRPC_FAILED:
                raise TritonFailed(text) from None
            if code == GRPC_MODEL_MISSING:
                raise TritonModelMissing(text) from None
            raise TritonRefused(text) from None


class _HttpTransport:
    def __init__(self, address: str, connect_timeout_s: float) -> None:
        import tritonclient.http as httpclient

        self._lib = httpclient
        self._address = address
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()  # guards the clients, their connections and calls, and `_closed`
        self._closed = False
        self._deadlines = DeadlineWatcher()
        #: geventhttpclient fixes a client's timeouts when it is made, so there is one client (and
        #: connection) per time-out in use, the least recently used first: a model's description (5 s)
        #: and its inference (10 s) alternate on an idle node's probes and sparse frames, and a single
        #: client remade at each change of time-out made a new connection for nearly every request.
        self._clients: OrderedDict[int, _HttpClient] = OrderedDict()

    def _client(self, network_timeout_s: int) -> _HttpClient:
        """The client for ``network_timeout_s``, made if there is none; past `HTTP_CLIENTS_KEPT`, the one
        least recently used is closed."""
        with self._lock:  # `close`, from another thread, closes those here
            client = self._clients.pop(network_timeout_s, None) or self._new_client(network_timeout_s)
            self._clients[network_timeout_s] = client
            unused = [self._clients.popitem(last=False)[1] for _ in range(len(self._clients) - HTTP_CLIENTS_KEPT)]
        for old in unused:
            old.client.close()
        return client

    def _new_client(self, network_timeout_s: int) -> _HttpClient:
        made = _HttpClient(
            self._lib.InferenceServerClient(
                url=self._address,
                verbose=False,
                # A connection that takes longer than the call's deadline is bounded by this, not by
                # the deadline's timer, which can only shut a connection once it is open.
                connection_timeout=min(self._connect_timeout_s, network_timeout_s),
                network_timeout=network_timeout_s,
            )
        )
        # The connection pool's hook for each new socket (geventhttpclient's, in tritonclient's
        # `_client_stub`): its own close only closes idle sockets, and `close` and a call's deadline
        # must end a busy one. Both are private: where a release lacks them, a stop waits out the
        # call's network time-out instead, and a trickled answer is bounded only by it.
        pool = getattr(getattr(made.client, "_client_stub", None), "_connection_pool", None)
        if pool is not None and hasattr(pool, "after_connect"):
            pool.after_connect = lambda connection: self._opened(made, connection)
        return made

    def _opened(self, client: _HttpClient, connection: Any) -> None:
        with self._lock:
            client.connections.add(connection)
            shut = self._closed or (client.call is not None and client.call.is_set())
        if shut:  # opened by a call that started as `close` ran, or one past its deadline retrying
            _shut(connection)

    def _expire(self, client: _HttpClient, call: threading.Event) -> None:
        """Watcher thread: ``call``, still in progress on ``client`` at its deadline, is ended by shutting
        the client's connections under it (one at a time per client: it is the requester thread's).

        Shut under the lock, which the requester takes to end a call and to begin the next: shut after
        it, a call ending just as its deadline passed let the next call take its pooled connection
        first, and that call was cut off mid-request. Shut before, the next call finds the connection
        dead as it sends, which the client retries on a fresh one.
        """
        with self._lock:
            if client.call is not call:  # it ended as its deadline passed
                return
            call.set()
            for connection in list(client.connections):
                _shut(connection)  # a shutdown(2): it never waits

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        config: dict[str, Any] = self._call(timeout_s, lambda client: client.get_model_config(model))
        return config

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float, version: str = ""
    ) -> list[np.ndarray]:
        request = self._lib.InferInput(input_name, list(batch.shape), _type_name(batch))
        request.set_data_from_numpy(batch, binary_data=True)
        wanted = [self._lib.InferRequestedOutput(name, binary_data=True) for name in outputs]
        reply = self._call(
            timeout_s, lambda client: client.infer(model, [request], model_version=version, outputs=wanted)
        )
        return _outputs(reply, outputs)

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        return _repository_models(self._call(timeout_s, lambda client: client.get_model_repository_index()))

    def server_live(self, timeout_s: float) -> bool:
        live: bool = self._call(timeout_s, lambda client: client.is_server_live())
        return live

    def close(self) -> None:
        """Shut every connection down under the calls using it, then close the client: a call in
        progress on the requester thread wakes at once, its connection closed (the client's own close
        only closes idle connections, and a gevent socket is woken only by its own thread's hub, which
        the OS socket's shutdown reaches from any thread)."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            connections = [connection for client in clients for connection in client.connections]
        for connection in connections:
            _shut(connection)
        for client in clients:
            client.client.close()
        self._deadlines.close()

    def _call(self, timeout_s: float, method: Any) -> Any:
        """``method(client)`` within ``timeout_s`` of now, whatever the server sends meanwhile."""
        started = time.monotonic()
        # The client's per-read time-out in whole seconds, rounded up: the time left of a deadline
        # changes with every request, and a client made for each would mean a new connection for each.
        client = self._client(math.ceil(timeout_s))
        call = threading.Event()  # set at the deadline, by `_expire`
        with self._lock:
            client.call = call
        try:
            with self._deadlines.watching(timeout_s, lambda: self._expire(client, call)):
                return method(client.client)
        except Exception as exc:
            if call.is_set():  # whatever shutting its connection made of the call
                raise TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)") from None
            raise self._failure(exc, timeout_s, timeout_s - (time.monotonic() - started)) from None
        finally:
            with self._lock:
                client.call = None

    def _failure(self, exc: Exception, timeout_s: float, left_s: float) -> Exception:
        """The exception to raise for ``exc``, raised by a call of ``timeout_s`` with ``left_s`` left; an
        exception of no known kind is ``exc`` itself."""
        from geventhttpclient.response import HTTPConnectionClosed  # tritonclient.http's HTTP client
        from rapidjson import JSONDecodeError  # tritonclient.http's JSON parser
        from tritonclient.utils import InferenceServerException

        if isinstance(exc, InferenceServerException):
            return _http_error(exc)
        if isinstance(exc, TimeoutError):
            return TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)")
        if isinstance(exc, OSError):  # refused, reset, unreachable
            return TritonUnavailable(_short(exc))
        if isinstance(exc, HTTPConnectionClosed):  # no answer: a server stopping closes its kept-alive connections
            return TritonUnavailable("connection closed before any answer")
        if isinstance(exc, http.client.HTTPException):  # an answer that is not HTTP/1: e.g. Triton's gRPC port
            # The parser's own words (``('Expected HTTP/, RTSP/ or ICE/', 8)``) tell a person nothing more.
            hint = _port_hint(self._address, "gRPC")
            return TritonUnavailable(f"not a Triton HTTP endpoint (its answer is not HTTP/1.1): {hint}")
        if isinstance(exc, JSONDecodeError):  # a 200 answer that is not Triton's JSON: e.g. Triton's metrics port
            if left_s > 0 and _serves_metrics(self._address, left_s, self._deadlines):
                return TritonUnavailable(
                    f"not a Triton HTTP endpoint (its answer is Prometheus metrics, not JSON): is {self._address} "
                    f"Triton's metrics port? http:// is usually port 8000, metrics 8002"
                )
            return TritonUnavailable("not a Triton HTTP endpoint (its answer is not JSON)")
        if type(exc).__name__ in {"Timeout", "ConnectionTimeout", "NetworkTimeout"}:  # gevent's is no OSError
            return TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)")
        return exc


@dataclass(eq=False, slots=True)
class _HttpClient:
    """One geventhttpclient client of `_HttpTransport`, every connection it opened, and its call in
    progress, if any: an event the call's deadline sets once it shut those connections."""

    client: Any
    connections: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    call: threading.Event | None = None


def _http_error(exc: Any) -> Exception:
    """The exception for an HTTP error answer of status ``exc.status()``, classified as gRPC's codes are."""
    text = _short(exc)
    try:
        status = int(str(exc.status() or ""))
    except ValueError:
        status = 0
    if text.startswith(_NOT_JSON_ERROR):  # an error page that is not Triton's: some other HTTP server
        return TritonUnavailable(f"not a Triton HTTP endpoint (HTTP {status} without Triton's JSON error)")
    if text.startswith(_EMPTY_ERROR):  # a proxy's or default backend's bare status, say before a restarting Triton
        return TritonUnavailable(f"not a Triton HTTP endpoint (HTTP {status} with an empty answer)")
    if status in HTTP_UNAVAILABLE:
        return TritonModelMissing(text) if _UNKNOWN_MODEL in text else TritonUnavailable(text)
    if status == HTTP_MODEL_MISSING:
        return TritonModelMissing(text)
    if 400 <= status < 500 or status in HTTP_REFUSED_5XX:
        return TritonRefused(text)
    return TritonFailed(text)


def _repository_models(entries: Any) -> list[RepositoryModel]:
    """The index as both protocols give it in JSON (gRPC's leaves out empty fields), each reason cut to
    its first line (a model that failed to load may give a traceback); `TritonUnavailable` if it is
    not a list of models, as an answer that is not Triton's."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) and "name" in entry for entry in entries):
        raise TritonUnavailable("not a Triton repository index")
    return [
        RepositoryModel(
            str(entry["name"]),
            str(entry.get("version", "")),
            str(entry.get("state", "")),
            _first_line(str(entry.get("reason", ""))),
        )
        for entry in entries
    ]


def _outputs(reply: Any, names: list[str]) -> list[np.ndarray]:
    """The outputs ``names`` of an inference answer, in that order; `TritonFailed` if it lacks one, as
    Triton's never do (a proxy's or another server's answer, say): the server failed the request, as
    an answer read by the model's description would not show."""
    found = [reply.as_numpy(name) for name in names]
    missing = [name for name, output in zip(names, found, strict=True) if output is None]
    if missing:
        raise TritonFailed(f"its answer has no output {', '.join(missing)}")
    return found


def _serves_metrics(address: str, timeout_s: float, deadlines: DeadlineWatcher) -> bool:
    """Whether ``address`` answers ``GET /metrics`` with Prometheus text, as Triton's metrics port does:
    asked only once an answer was found not to be JSON, whose text the client does not hand back.
    Within ``timeout_s`` of now, however slowly the server sends: at the deadline ``deadlines`` shuts
    its connection."""
    connection = http.client.HTTPConnection(address, timeout=timeout_s)  # no proxy, as the client connects

    def expire() -> None:
        if connection.sock is not None:
            _shut(connection.sock)

    try:
        with deadlines.watching(timeout_s, expire):
            connection.request("GET", "/metrics")
            answer = connection.getresponse()
            start = answer.read(METRICS_SNIFF_BYTES).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()
    return answer.status == 200 and start.startswith(("# HELP ", "# TYPE "))


def _port_hint(address: str, other: str) -> str:
    """The question to ask of a server that does not speak the URL's protocol: the usual mistake is
    Triton's other port, or at its default, Triton's metrics port."""
    if address.rpartition(":")[2] == str(DEFAULT_METRICS_PORT):
        return f"is {address} Triton's metrics port? its gRPC port is 8001 by default, HTTP 8000"
    return f"is {address} Triton's {other} port? grpc:// is usually port 8001, http:// 8000"


def _shut(connection: Any) -> None:
    """Shut a gevent socket's OS socket down, which is safe from any thread; one closed meanwhile is left be."""
    with contextlib.suppress(OSError):
        getattr(connection, "_sock", connection).shutdown(socket.SHUT_RDWR)


def _type_name(batch: np.ndarray) -> str:
    return {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}[batch.dtype]


def _short(exc: BaseException) -> str:
    """The first line of a client error, which for gRPC carries the whole server message."""
    message = getattr(exc, "message", None)
    return _first_line((message() if callable(message) else str(exc)).strip() or type(exc).__name__)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
