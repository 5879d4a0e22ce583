"""How long a node on Triton waits, and when it asks again: a call's wall-clock deadline over either
protocol, the idle probe's interval, and a fresh connection after a failure.

A server or proxy that trickles its answer a byte at a time never trips a client's per-read time-out:
the servers here do just that, for as long as the test runs, so a call without a deadline of its own
would never end. A call is run on a thread of its own and must have ended within `HANG_S`, a bound
only such a hang reaches; what it must have done is fail as slow, never complete.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import server.triton.model as triton_model
import server.triton.transport as transport_module
from server.inference.models import InferenceUnavailable
from server.triton.model import TritonModel
from server.triton.transport import (
    TritonEndpoint,
    TritonTimeout,
    TritonUnavailable,
    _HttpClient,
    _HttpTransport,
    open_transport,
)
from tests.test_triton_faults import _Clock, _descriptions_read, _FakeTriton, _grpc_service, _image, _model, _probed

#: Seconds a trickling server waits between two bytes: well inside the HTTP client's per-read time-out.
TRICKLE_S = 0.1
#: A call still going after this long would never have ended.
HANG_S = 30.0
#: The deadline the calls here are given.
DEADLINE_S = 1.0
#: Calls made one after another on one transport, as a busy node's requester thread makes them.
SEQUENTIAL_CALLS = 20
#: A head promising far more than is ever sent: what follows is trickled until the test ends.
ENDLESS_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"

#: A trickling server's answer to a request for a path: its head, sent at once, then a byte to send
#: every `TRICKLE_S` for ever (b"": none, the answer is complete).
Trickle = Callable[[str], tuple[bytes, bytes]]


@contextmanager
def _trickling_server(answer: Trickle) -> Iterator[str]:
    """An HTTP server at a free local port that answers each request with ``answer(path)``, trickling
    until the test ends (then it closes its connections, so a call still waiting on one ends too)."""
    stopped = threading.Event()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline().split(b" ")
            if len(request) < 3:  # a connection shut before it asked anything: the client's deadline had passed
                return
            path = request[1].decode()
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.rfile.read(length)
            head, byte = answer(path)
            try:
                self.wfile.write(head)
                while byte and not stopped.wait(TRICKLE_S):
                    self.wfile.write(byte)
            except OSError:  # the client gave up and closed the connection
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="trickling-http", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(HANG_S)


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call()`` returned or raised, run on a thread of its own; fails if it has not ended
    within `HANG_S`."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="call-under-test", daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"the call had not ended after {HANG_S:.0f} s: no deadline of its own"
    return outcome[0]


@pytest.mark.parametrize("request_kind", ["model config", "inference"])
def test_an_http_answer_trickled_a_byte_at_a_time_fails_at_the_calls_deadline(request_kind: str) -> None:
    """Each byte comes well within the client's per-read time-out: without a deadline of the whole
    call, a stalled proxy held the inference thread for as long as it kept trickling."""
    with _trickling_server(lambda path: (ENDLESS_JSON, b" ")) as address:  # JSON whitespace, for ever
        transport = open_transport(TritonEndpoint("http", address, "m"), 5.0)
        try:
            if request_kind == "model config":
                outcome = _outcome(lambda: transport.model_config("m", DEADLINE_S))
            else:
                batch = np.zeros((1, 3, 32, 32), np.uint8)
                outcome = _outcome(lambda: transport.infer("m", "images", batch, ["output0"], DEADLINE_S))
        finally:
            transport.close()
    assert isinstance(outcome, TritonTimeout), outcome
    assert str(outcome) == "not answering (nothing within 1 s)"


def test_a_grpc_call_the_server_never_answers_fails_at_its_deadline() -> None:
    """gRPC enforces the deadline itself; the same promise as over HTTP."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    released = threading.Event()

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelConfig(self, request: Any, context: Any) -> Any:  # gRPC's method names
            released.wait(HANG_S)
            context.abort(grpc.StatusCode.UNAVAILABLE, "released as the test ended")

    with _grpc_service(Service()) as address:
        transport = open_transport(TritonEndpoint("grpc", address, "m"), 5.0)
        try:
            outcome = _outcome(lambda: transport.model_config("m", DEADLINE_S))
        finally:
            released.set()
            transport.close()
    assert isinstance(outcome, TritonTimeout), outcome


def test_a_node_whose_http_server_trickles_its_answer_is_unavailable_after_one_deadline() -> None:
    """The model's deadline reaches the wire: a batch sent with 2 s fails as unanswered in 2 s, and
    inference is unavailable, rather than the inference thread waiting for the last byte."""
    described = json.dumps(_FakeTriton().model_config("m", 1.0)).encode()

    def answer(path: str) -> tuple[bytes, bytes]:
        if path.endswith("/config"):
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(described)
            return head + described, b""
        return ENDLESS_JSON, b" "

    with _trickling_server(answer) as address:
        # 2 s: the model's description at start gets as long, and must come through on a loaded machine.
        model = TritonModel(TritonEndpoint("http", address, "m"), f"http://{address}/m", request_timeout_s=2.0)
        try:
            model.connect()
            assert model.status.available
            outcome = _outcome(lambda: model.detect([_image()]))
        finally:
            model.close()
    assert isinstance(outcome, InferenceUnavailable), outcome
    assert str(outcome).endswith("is not answering (nothing within 2 s)")
    assert not model.status.available


def test_an_answer_that_is_not_json_is_told_from_metrics_within_the_calls_deadline() -> None:
    """A 200 answer that is not JSON has the node ask for ``/metrics`` (is it Triton's metrics port?):
    a server that trickles that answer's head held the call for ever too."""

    def answer(path: str) -> tuple[bytes, bytes]:
        if path == "/metrics":
            return b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"  # a header line that never ends
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", b""

    with _trickling_server(answer) as address:
        transport = open_transport(TritonEndpoint("http", address, "m"), 5.0)
        try:
            outcome = _outcome(lambda: transport.model_config("m", DEADLINE_S))
        finally:
            transport.close()
    assert isinstance(outcome, TritonUnavailable), outcome
    assert str(outcome) == "not a Triton HTTP endpoint (its answer is not JSON)"


def test_http_calls_share_one_deadline_thread_that_ends_with_the_transport() -> None:
    """A timer thread per call made a thread for every inference request, on the hot path of a node
    with many cameras: the transport's first call starts its one deadline watcher, later calls start
    no thread, and the watcher ends when the transport is closed."""
    described = json.dumps(_FakeTriton().model_config("m", 1.0)).encode()
    handlers: set[threading.Thread] = set()  # the server's own, one per connection
    alive_during_calls: set[threading.Thread] = set()

    def answer(path: str) -> tuple[bytes, bytes]:
        handlers.add(threading.current_thread())
        alive_during_calls.update(threading.enumerate())
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(described)
        return head + described, b""

    with _trickling_server(answer) as address:
        before = set(threading.enumerate())
        transport = open_transport(TritonEndpoint("http", address, "m"), 5.0)
        try:
            transport.model_config("m", DEADLINE_S)
            watchers = set(threading.enumerate()) - before - handlers
            alive_during_calls.clear()
            for _ in range(SEQUENTIAL_CALLS):
                transport.model_config("m", DEADLINE_S)
            started = alive_during_calls - before - watchers - handlers
        finally:
            transport.close()
    assert not started, f"{len(started)} threads started by {SEQUENTIAL_CALLS} calls: {sorted(t.name for t in started)}"
    assert len(watchers) == 1, sorted(t.name for t in watchers)
    for watcher in watchers:
        watcher.join(HANG_S)
        assert not watcher.is_alive(), f"{watcher.name} still runs after the transport was closed"


# -- when a node asks again ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The model's clock, moved by the test only."""
    moved = _Clock()
    monkeypatch.setattr(triton_model, "time", moved)
    return moved


def test_an_available_idle_node_asks_its_server_again_only_every_idle_probe_interval(
    clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle node's status follows Triton without asking it every time the inference thread looks:
    once `IDLE_PROBE_S` after the last exchange, not before."""
    triton = _FakeTriton()
    monkeypatch.setattr(triton_model, "open_transport", lambda endpoint, timeout_s: triton)
    described = _descriptions_read(triton, monkeypatch)
    model = _model()
    try:
        assert described == ["m"]
        clock.now += triton_model.IDLE_PROBE_S - 0.5
        assert not _probed(model)
        clock.now += 0.5
        assert _probed(model)
        assert described == ["m", "m"]
        assert not _probed(model), "asked again at once"
        assert model.status.available
    finally:
        model.close()


def test_a_node_opens_a_fresh_connection_after_a_failure(clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gRPC channel that saw the server go keeps its own reconnect backoff, far longer than the
    node's (2.9 s to recover after a 45 s outage with a fresh connection, 6.8 s reusing the channel):
    the attempt after a failure closes the old connection and opens another."""
    triton = _FakeTriton()
    opened: list[_FakeTriton] = []

    def open_connection(endpoint: TritonEndpoint, timeout_s: float) -> _FakeTriton:
        opened.append(triton)
        return triton

    monkeypatch.setattr(triton_model, "open_transport", open_connection)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        assert len(opened) == 1 and not triton.closed.is_set(), "one connection while all goes well"
        triton.down = True
        with pytest.raises(InferenceUnavailable, match="connection refused"):
            model.detect([_image()])
        triton.down = False
        clock.now += triton_model.RETRY_FIRST_S
        assert len(model.detect([_image()])) == 1
        assert len(opened) == 2, "the attempt after the failure reused the connection that saw it"
        assert triton.closed.is_set(), "the connection that saw the failure was left open"
    finally:
        model.close()


def test_a_calls_connections_are_shut_at_its_deadline_before_another_call_can_begin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline's watcher shut the call's connections after letting go of the transport's lock: a call
    ending just as its deadline passed let the requester begin the next one on its pooled connection, which
    the shutdown then cut mid-request. The requester ends a call, and begins one, under that lock."""
    transport = open_transport(TritonEndpoint("http", "127.0.0.1:1", "m"), 1.0)
    assert isinstance(transport, _HttpTransport)
    client, pooled = _HttpClient(client=None), socket.socket()
    call = client.call = threading.Event()
    client.connections.add(pooled)
    next_call_could_begin: list[bool] = []

    def shut(connection: Any) -> None:
        free = transport._lock.acquire(blocking=False)  # what the requester would take to begin the next call
        if free:
            transport._lock.release()
        next_call_could_begin.append(free)

    monkeypatch.setattr(transport_module, "_shut", shut)
    try:
        transport._expire(client, call)
    finally:
        pooled.close()
        transport.close()
    assert call.is_set()
    assert next_call_could_begin == [False]
