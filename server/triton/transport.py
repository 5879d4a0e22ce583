"""Talking to a Triton server: its address in ``--model``, and one request over gRPC or HTTP.

Every call has a deadline and every failure comes out as one of two exceptions, so the inference
thread never hangs on a network and never sees a client library's own error types:
`TritonUnavailable` (no answer in time, connection refused or reset, an answer that is not Triton's,
`TritonFailed`: the server failed the request on its side, or `TritonModelMissing`: the server has
no such model now; worth retrying) and `TritonRefused` (the server answered no because of the
request: an input it cannot take).

gRPC and HTTP are classified alike, by the Triton error behind the status: INVALID_ARGUMENT,
ALREADY_EXISTS, UNIMPLEMENTED (HTTP 400, 409, 501 and other 4xx) are the request's fault; NOT_FOUND
(HTTP 404 with Triton's JSON error) is a model Triton does not serve now (never loaded, unloaded, or
being replaced); INTERNAL and UNKNOWN (HTTP 500) are the server's (a crashed backend stub, CUDA out of
memory); UNAVAILABLE, RESOURCE_EXHAUSTED, CANCELLED (HTTP 502, 503, 504, 429) are a server that is
not there or too busy. An HTTP error answer without Triton's JSON (an empty 404 of a proxy or
default backend, an HTML page) is not Triton's at all.

Requests go in the clear and carry no credentials: ``grpcs://``, ``https://`` and a user name or
password in the URL are refused at start rather than quietly sent without them (or the password
printed). Put nodes and Triton on a network of their own, or behind a TLS tunnel.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import math
import socket
import threading
import urllib.request
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from server.inference.models import ModelError
from server.sources.uri import mask_uri

SCHEMES = ("grpc", "http")
#: HTTP clients (each with its connection) kept open at once, one per time-out in use (`_HttpTransport`).
HTTP_CLIENTS_KEPT = 3
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
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


class TritonRefused(Exception):
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
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float
    ) -> list[np.ndarray]:
        """Run ``batch`` through ``model`` as one request; the named outputs, in that order."""
        ...

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        """Every model in the server's repository, loaded or not, with its state: what tells a model
        still loading, or unloaded, from one the server does not have (both are NOT_FOUND to the
        other calls). A server that restricts its repository API (``--grpc-restricted-protocol``,
        ``--http-restricted-api``) refuses it without the header: `TritonUnavailable` over gRPC,
        `TritonRefused` over HTTP."""
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
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float
    ) -> list[np.ndarray]:
        request = self._lib.InferInput(input_name, list(batch.shape), _type_name(batch))
        request.set_data_from_numpy(batch)
        wanted = [self._lib.InferRequestedOutput(name) for name in outputs]
        reply = self._call(self._client.infer, model, [request], outputs=wanted, client_timeout=timeout_s)
        return [reply.as_numpy(name) for name in outputs]

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        reply = self._call(self._client.get_model_repository_index, as_json=True, client_timeout=timeout_s)
        return _repository_models(reply.get("models", []))

    def close(self) -> None:
        self._client.close()  # closing the channel cancels its calls in progress, from any thread

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            code = str(exc.status() or "").removeprefix("StatusCode.")  # as tritonclient gives grpc.StatusCode
            if code == "DEADLINE_EXCEEDED":
                raise TritonTimeout(f"no answer within {kwargs['client_timeout']:.3g} s") from None
            text = _short(exc)
            if _NOT_GRPC in text:  # gRPC's parser words, then the raw bytes: the hint says more
                hint = _port_hint(self._address, "HTTP")
                if _HTTP1_SERVER in text:  # "... (Trying to connect an http1.x server (HTTP status 400))"
                    raise TritonUnavailable(f"it answers HTTP/1.1, not gRPC: an http:// endpoint? {hint}") from None
                raise TritonUnavailable(f"its answer is not gRPC: {hint}") from None
            if code in GRPC_UNAVAILABLE:
                # gRPC says "failed to connect to all addresses; last error: ...: Connection refused"
                if "Connection refused" in text:
                    raise TritonUnavailable("connection refused") from None
                if _NOT_HTTP2 in text and _NO_CONNECTION in text:  # a server that does not speak gRPC
                    raise TritonUnavailable(f"{text}; {_port_hint(self._address, 'HTTP')}") from None
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
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()  # every socket its clients opened
        self._connections_lock = threading.Lock()  # guards the set, the clients and `_closed`
        self._closed = False
        #: geventhttpclient fixes a client's timeouts when it is made, so there is one client (and
        #: connection) per time-out in use, the least recently used first: a model's description (5 s)
        #: and its inference (10 s) alternate on an idle node's probes and sparse frames, and a single
        #: client remade at each change of time-out made a new connection for nearly every request.
        self._clients: OrderedDict[int, Any] = OrderedDict()

    def _client(self, network_timeout_s: int) -> Any:
        """The client for ``network_timeout_s``, made if there is none; past `HTTP_CLIENTS_KEPT`, the one
        least recently used is closed."""
        with self._connections_lock:  # `close`, from another thread, closes those here
            client = self._clients.pop(network_timeout_s, None) or self._new_client(network_timeout_s)
            self._clients[network_timeout_s] = client
            unused = [self._clients.popitem(last=False)[1] for _ in range(len(self._clients) - HTTP_CLIENTS_KEPT)]
        for old in unused:
            old.close()
        return client

    def _new_client(self, network_timeout_s: float) -> Any:
        client = self._lib.InferenceServerClient(
            url=self._address,
            verbose=False,
            connection_timeout=self._connect_timeout_s,
            network_timeout=network_timeout_s,
        )
        # The connection pool's hook for each new socket (geventhttpclient's, in tritonclient's
        # `_client_stub`): its own close only closes idle sockets, and `close` must end a busy one.
        # Both are private: where a release lacks them, a stop waits out the call's deadline instead.
        pool = getattr(getattr(client, "_client_stub", None), "_connection_pool", None)
        if pool is not None and hasattr(pool, "after_connect"):
            pool.after_connect = self._opened
        return client

    def _opened(self, connection: Any) -> None:
        with self._connections_lock:
            self._connections.add(connection)
            closed = self._closed
        if closed:  # opened by a call that started as `close` ran
            _shut(connection)

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        config: dict[str, Any] = self._call(timeout_s, lambda client: client.get_model_config(model))
        return config

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float
    ) -> list[np.ndarray]:
        request = self._lib.InferInput(input_name, list(batch.shape), _type_name(batch))
        request.set_data_from_numpy(batch, binary_data=True)
        wanted = [self._lib.InferRequestedOutput(name, binary_data=True) for name in outputs]
        reply = self._call(timeout_s, lambda client: client.infer(model, [request], outputs=wanted))
        return [reply.as_numpy(name) for name in outputs]

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        return _repository_models(self._call(timeout_s, lambda client: client.get_model_repository_index()))

    def close(self) -> None:
        """Shut every connection down under the calls using it, then close the client: a call in
        progress on the requester thread wakes at once, its connection closed (the client's own close
        only closes idle connections, and a gevent socket is woken only by its own thread's hub, which
        the OS socket's shutdown reaches from any thread)."""
        with self._connections_lock:
            self._closed = True
            connections = list(self._connections)
            clients = list(self._clients.values())
        for connection in connections:
            _shut(connection)
        for client in clients:
            client.close()

    def _call(self, timeout_s: float, method: Any) -> Any:
        from geventhttpclient.response import HTTPConnectionClosed  # tritonclient.http's HTTP client
        from rapidjson import JSONDecodeError  # tritonclient.http's JSON parser
        from tritonclient.utils import InferenceServerException

        # Whole seconds, rounded up: the time left of a deadline changes with every request, and a
        # client made for each would mean a new connection for each.
        timeout_s = math.ceil(timeout_s)
        try:
            return method(self._client(timeout_s))
        except InferenceServerException as exc:
            raise _http_error(exc) from None
        except TimeoutError:
            raise TritonTimeout(f"no answer within {timeout_s:g} s") from None
        except OSError as exc:  # refused, reset, unreachable
            raise TritonUnavailable(_short(exc)) from None
        except HTTPConnectionClosed:  # no answer at all: a server stopping closes its kept-alive connections
            raise TritonUnavailable("connection closed before any answer") from None
        except http.client.HTTPException:  # an answer that is not HTTP/1: e.g. Triton's gRPC port
            # The parser's own words (``('Expected HTTP/, RTSP/ or ICE/', 8)``) tell a person nothing more.
            hint = _port_hint(self._address, "gRPC")
            raise TritonUnavailable(f"not a Triton HTTP endpoint (its answer is not HTTP/1.1): {hint}") from None
        except JSONDecodeError:  # a 200 answer that is not Triton's JSON: e.g. Triton's metrics port
            if _serves_metrics(self._address, timeout_s):
                raise TritonUnavailable(
                    f"not a Triton HTTP endpoint (its answer is Prometheus metrics, not JSON): is {self._address} "
                    f"Triton's metrics port? http:// is usually port 8000, metrics 8002"
                ) from None
            raise TritonUnavailable("not a Triton HTTP endpoint (its answer is not JSON)") from None
        except Exception as exc:  # gevent's Timeout is no OSError
            if type(exc).__name__ in {"Timeout", "ConnectionTimeout", "NetworkTimeout"}:
                raise TritonTimeout(f"no answer within {timeout_s:g} s") from None
            raise


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
        return TritonUnavailable(text)
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


def _serves_metrics(address: str, timeout_s: float) -> bool:
    """Whether ``address`` answers ``GET /metrics`` with Prometheus text, as Triton's metrics port does:
    asked only once an answer was found not to be JSON, whose text the client does not hand back."""
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the client itself connects
        with direct.open(f"http://{address}/metrics", timeout=timeout_s) as answer:
            start = answer.read(METRICS_SNIFF_BYTES).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException, ValueError):
        return False
    return start.startswith(("# HELP ", "# TYPE "))


def _port_hint(address: str, other: str) -> str:
    """The question to ask of a server that does not speak the URL's protocol: the usual mistake is
    Triton's other port."""
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
