"""``segcast triton serve`` as a supervisor sees it: the launcher exits when its server can no longer
serve, leaves none of that server's processes behind, and listens where ``--host`` says.

Each test starts the real launcher (tritonserver from the venv ``segcast triton setup`` makes) on a
tiny ONNX model, an identity, which loads in seconds; without that venv they skip like the other
Triton tests. The processes under the launcher are found in ``/proc``: tritonserver is its only
child, and the Python backend stub of the one model is tritonserver's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.triton.cpu_server import _client_host, exit_message, main
from tests.support.components import require_module
from tests.support.triton_server import TritonProcess, free_ports, require_triton_venv

MODEL = "identity"
#: The launcher stopping tritonserver (which gives running requests 10 s) after it saw a stub die.
EXIT_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 10.0
POLL_S = 0.05

onnx = require_module("onnx", "needs the onnx extra: pip install '.[onnx]'")
require_module("tritonclient.grpc", "needs the triton extra: pip install '.[triton]'")  # the launcher reads configs


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository for Triton's ONNX Runtime backend holding `MODEL`: ``y = x``, batches of rows of 4."""
    from onnx import TensorProto, helper

    root = tmp_path_factory.mktemp("launcher") / "models"
    (root / MODEL / "1").mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(root / MODEL / "1" / "model.onnx"))
    (root / MODEL / "config.pbtxt").write_text(
        'backend: "onnxruntime"\nmax_batch_size: 4\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    )
    return root


def state(pid: int) -> str | None:
    """A process's state as ``ps`` shows it (Z: exited, not yet reaped), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(") ")[2].split()[0]


def ended(pid: int) -> bool:
    return state(pid) in (None, "Z")


def only_child(pid: int) -> int:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rpartition(") ")[2].split()[1]) == pid and not ended(int(entry.name)):
            children.append(int(entry.name))
    assert len(children) == 1, f"process {pid} has children {children}"
    return children[0]


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout_s:.0f} s"
        time.sleep(POLL_S)


def launcher_exit(server: TritonProcess, timeout_s: float) -> int:
    """The launcher's exit status, once it has exited by itself (bounded wait)."""
    process = server.process
    assert process is not None
    wait_for(lambda: process.poll() is not None, "exited", timeout_s)
    return process.returncode


def test_a_backend_stub_that_dies_stops_the_server_with_one_line_saying_so(repository: Path) -> None:
    """Killed by the OOM killer, say: tritonserver would stay ready and fail every request for good."""
    with TritonProcess(repository) as server:
        tritonserver = only_child(server.pid)
        stub = only_child(tritonserver)
        os.kill(stub, signal.SIGKILL)
        assert launcher_exit(server, EXIT_TIMEOUT_S) == 1, server.output()
        last = server.output().rstrip("\n").splitlines()[-1]
        assert last == (
            f"segcast: the Python backend stub of model {MODEL} (pid {stub}) died, and tritonserver cannot start"
            " it again; stopped tritonserver for a supervisor to restart"
        )
        assert ended(tritonserver)


def test_a_stub_that_outlives_a_killed_tritonserver_is_killed_with_it(repository: Path) -> None:
    """A stub busy when tritonserver is killed never exits; a stopped one stands in for it here."""
    with TritonProcess(repository) as server:
        tritonserver = only_child(server.pid)
        stub = only_child(tritonserver)
        os.kill(stub, signal.SIGSTOP)
        try:
            os.kill(tritonserver, signal.SIGKILL)
            assert launcher_exit(server, EXIT_TIMEOUT_S) == 128 + signal.SIGKILL
            assert server.output().rstrip("\n").splitlines()[-1] == (
                "segcast: tritonserver was killed by signal 9 (SIGKILL), from outside segcast (the kernel's OOM "
                "killer, or kill -9); it logged nothing first. segcast does not restart it: run triton serve under "
                "a service manager (systemd Restart=on-failure, a container restart policy) for that"
            )
            wait_for(lambda: ended(stub), "the orphaned stub killed", GONE_TIMEOUT_S)
        finally:
            if not ended(stub):
                os.kill(stub, signal.SIGKILL)


def test_a_host_name_is_served_at_its_ipv4_address_which_the_ready_line_gives(repository: Path) -> None:
    with TritonProcess(repository, "--host", "localhost") as server:
        assert server.ready()
        assert (
            f"triton: serving {MODEL} at grpc://127.0.0.1:{server.grpc_port}/{MODEL}"
            f" and http://127.0.0.1:{server.http_port}/{MODEL} (--host localhost is 127.0.0.1)\n"
        ) in server.output()


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("::1", "--host ::1: tritonserver listens on IPv4 only; give an IPv4 address or name"),
        ("nowhere.invalid", "--host nowhere.invalid: no IPv4 address ("),
    ],
)
def test_a_host_without_an_ipv4_address_is_refused_in_one_line(
    repository: Path, capsys: pytest.CaptureFixture[str], host: str, error: str
) -> None:
    require_triton_venv()
    http, grpc, metrics = (str(port) for port in free_ports(3))
    ports = ["--http-port", http, "--grpc-port", grpc, "--metrics-port", metrics]
    assert main(["serve", str(repository), "--host", host, *ports]) == 2
    refusal = capsys.readouterr().err
    assert refusal.startswith(f"segcast: {error}") and refusal.count("\n") == 1, refusal


def test_an_exit_while_serving_says_whether_it_logged_and_who_restarts_it() -> None:
    assert exit_message(1, logged=True) == (
        "tritonserver exited with status 1; its last lines are above. segcast does not restart it: run triton "
        "serve under a service manager (systemd Restart=on-failure, a container restart policy) for that"
    )
    assert exit_message(-signal.SIGSEGV, logged=False).startswith(
        "tritonserver was killed by signal 11 (SIGSEGV); it logged nothing first. "
    )


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--instances", "0"], "--instances 0: must be at least 1"),
        (["--instances", "-1"], "--instances -1: must be at least 1"),
        (["--http-port", "0"], "--http-port 0: must be between 1 and 65535"),
        (["--grpc-port", "65536"], "--grpc-port 65536: must be between 1 and 65535"),
        (["--metrics-port", "0"], "--metrics-port 0: must be between 1 and 65535"),
        (["--http-port", "8001"], "--http-port, --grpc-port, --metrics-port must all differ"),
    ],
)
def test_a_flag_wrong_in_itself_is_refused_in_one_line_before_the_install_is_looked_for(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str
) -> None:
    """No install here (--venv names nothing), so nothing can launch: the flag is named at once, not after
    the user has set up Triton only to be told of it next (8001 is gRPC's default port; two listeners
    on it would each pass a probe alone, and tritonserver fail on the second)."""
    assert main(["serve", str(repository), "--venv", str(tmp_path / "no-venv"), *flags]) == 2
    assert capsys.readouterr().err == f"segcast: {said}\n"


def test_clients_on_this_machine_reach_a_server_on_every_address_at_the_loopback() -> None:
    """The ready line gives this host: 0.0.0.0 is where a server listens, not an address every client can reach."""
    assert _client_host("0.0.0.0") == "127.0.0.1"
    assert _client_host("192.0.2.7") == "192.0.2.7"
