"""``segcast triton serve``: a real Triton Inference Server on the CPU, serving an exported model.

The server is NVIDIA's tritonserver from the venv ``segcast triton setup`` makes; these tests skip
without it (and fail under ``SEGCAST_REQUIRE_COMPONENTS=1``). One server answers the inference
tests and is stopped and restarted; a model that fails to load starts one of its own, and the other
refusals come before any server starts.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.inference.models import BUNDLED_MODEL
from server.scene import Scene
from server.triton.cpu_install import PACKAGES
from server.triton.cpu_server import SHM_DIR, main, shm_region_prefix
from server.triton.model import TritonModel
from server.triton.repository import write_repository
from server.triton.transport import TritonEndpoint, TritonRefused
from tests.support.at_once import WORKERS, run_at_once
from tests.support.cached_videos import cached_folder
from tests.support.components import require_component, require_module
from tests.support.triton_server import REPO, TritonProcess, free_ports, require_triton_venv

MODEL = "segcast-scene-seg"
INPUT_HW = (384, 640)
OUTPUTS = ("output0", "output1")
CLIENT_TIMEOUT_S = 60.0
COUNT_TIMEOUT_S = 10.0
POLL_S = 0.05

grpc = require_module("tritonclient.grpc", "needs the triton extra: pip install '.[triton]'")
text_format = require_module("google.protobuf.text_format", "needs the triton extra: pip install '.[triton]'")


@pytest.fixture(scope="session")
def bundled_onnx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model exported to ONNX once per machine (per version of the .pt), kept between runs
    in pytest's cache (for this session only when the cache is off: ``-p no:cacheprovider``)."""
    from server.inference.export import export_model, missing_packages

    if missing_packages("onnx"):
        require_component(False, "needs the onnx extra: pip install '.[onnx]'")
    cache = getattr(request.config, "cache", None)
    kept = Path(cache.mkdir("segcast-triton")) if cache is not None else tmp_path_factory.mktemp("segcast-triton")
    digest = hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()[:12]
    folder = cached_folder(kept / digest, lambda partial: export_model("bundled", "onnx", partial))
    return folder / f"{BUNDLED_MODEL.stem}.onnx"


def export_after(start: Barrier, out: Path) -> None:
    """An export's folder, written once every other worker has found the cache empty too."""
    start.wait()
    out.mkdir(exist_ok=True)  # as `export_model` takes a folder that is there
    (out / "model.onnx").write_text(str(os.getpid()))


def cache_export(start: Barrier, folder: Path) -> None:
    cached_folder(folder, functools.partial(export_after, start))


def test_workers_exporting_the_model_at_once_all_use_one_whole_folder(tmp_path: Path) -> None:
    """The export went to one ``{digest}.partial`` folder for every worker (safe only while one module's
    tests stay on one worker, ``--dist loadfile``): a second exporter wrote into the first's folder,
    and its rename failed, the folder in place being the first's (or the partial one, renamed away)."""
    folder = tmp_path / "digest"
    workers = run_at_once(cache_export, folder)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    assert list(tmp_path.iterdir()) == [folder], "one folder, no partial one left"
    assert (folder / "model.onnx").read_text() in {str(worker.pid) for worker in workers}, "one worker's whole"


@pytest.fixture(scope="module")
def repository(bundled_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository for Triton's ONNX Runtime backend, as ``segcast export --format triton`` writes it."""
    out = tmp_path_factory.mktemp("triton") / "models"
    write_repository(bundled_onnx, out, MODEL)
    return out


@pytest.fixture(scope="module")
def served_onnx(repository: Path) -> Path:
    """The ONNX file the repository holds: what Triton runs, and what the tests run in-process to compare."""
    return repository / MODEL / "1" / "model.onnx"


@pytest.fixture(scope="module")
def triton(repository: Path) -> Iterator[TritonProcess]:
    with TritonProcess(repository) as server:
        yield server


def letterboxed_batch(count: int, seed: int) -> np.ndarray:
    """Scene frames as a segcast node sends them: letterboxed to `INPUT_HW`, RGB, CHW, uint8 pixels."""
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox(INPUT_HW, auto=False, stride=32)
    scene = Scene(seed=seed, width=480, height=360)  # 4:3 frames, so the letterbox pads them
    images = [np.asarray(letterbox(image=scene.render(30 * i)[0])) for i in range(count)]
    return np.ascontiguousarray(np.stack(images)[..., ::-1].transpose(0, 3, 1, 2))


def onnx_runtime(onnx_path: Path, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return list(session.run(list(OUTPUTS), {"images": batch}))


def requested() -> list[Any]:
    return [grpc.InferRequestedOutput(name) for name in OUTPUTS]


def infer(client: Any, batch: np.ndarray) -> list[np.ndarray]:
    images = grpc.InferInput("images", list(batch.shape), "UINT8")
    images.set_data_from_numpy(batch)
    result = client.infer(MODEL, [images], outputs=requested(), client_timeout=CLIENT_TIMEOUT_S)
    return [result.as_numpy(name) for name in OUTPUTS]


def assert_same(served: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for name, got, want in zip(OUTPUTS, served, expected, strict=True):
        assert got.shape == want.shape, name
        assert np.allclose(got, want, rtol=1e-5, atol=1e-4), (name, float(np.abs(got - want).max()))


def metric(text: str, name: str) -> int:
    match = re.search(rf'^{name}{{model="{MODEL}",version="1"}} (\d+)', text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return int(match.group(1))


def counted(triton: TritonProcess, requests: int) -> str:
    """``/metrics`` once it counts ``requests`` inference requests in all (bounded wait)."""
    deadline = time.monotonic() + COUNT_TIMEOUT_S
    while metric(text := triton.metrics(), "nv_inference_count") < requests and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return text


def test_a_batch_gives_what_onnx_runtime_gives_in_process(triton: TritonProcess, served_onnx: Path) -> None:
    batch = letterboxed_batch(4, seed=3)
    client = grpc.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    try:
        served = infer(client, batch)
    finally:
        client.close()
    assert_same(served, onnx_runtime(served_onnx, batch))
    assert served[0].shape == (4, 39, 5040)  # 4 + 3 classes + 32 mask coefficients, at 3 strides of 384x640


def test_the_served_config_keeps_the_metadata_and_batching(triton: TritonProcess, repository: Path) -> None:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    written = text_format.Parse((repository / MODEL / "config.pbtxt").read_text(), ModelConfig())
    served = triton.api(f"/v2/models/{MODEL}/config")
    assert served["parameters"]["metadata"]["string_value"] == written.parameters["metadata"].string_value
    assert "'names': {0: 'disc', 1: 'square', 2: 'triangle'}" in served["parameters"]["metadata"]["string_value"]
    assert served["max_batch_size"] == written.max_batch_size
    assert served["dynamic_batching"]["preferred_batch_size"] == list(written.dynamic_batching.preferred_batch_size)
    assert [tensor["name"] for tensor in served["input"]] == ["images"]


def test_concurrent_requests_from_two_clients_run_in_shared_batches(triton: TritonProcess, served_onnx: Path) -> None:
    per_client = 6
    batches = {seed: letterboxed_batch(per_client, seed) for seed in (11, 12)}
    answers: dict[tuple[int, int], Any] = {}
    answered = {seed: threading.Semaphore(0) for seed in batches}
    before = triton.metrics()

    def done(key: tuple[int, int], result: Any, error: Exception | None) -> None:
        answers[key] = error if error is not None else result
        answered[key[0]].release()

    def client_thread(seed: int) -> None:
        """Send every frame as its own request at once, as many nodes would, and wait for the answers."""
        client = grpc.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
        try:
            for index in range(per_client):
                images = grpc.InferInput("images", [1, 3, *INPUT_HW], "UINT8")
                images.set_data_from_numpy(batches[seed][index : index + 1])
                callback = functools.partial(done, (seed, index))
                client.async_infer(MODEL, [images], callback, outputs=requested(), client_timeout=CLIENT_TIMEOUT_S)
            for _ in range(per_client):
                answered[seed].acquire(timeout=CLIENT_TIMEOUT_S)
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(seed,)) for seed in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S * 2)

    for seed, batch in batches.items():  # each request got its own frame's answer back
        expected = onnx_runtime(served_onnx, batch)
        for index in range(per_client):
            answer = answers.get((seed, index))
            assert isinstance(answer, grpc.InferResult), str(answer)
            assert_same([answer.as_numpy(name) for name in OUTPUTS], [output[index : index + 1] for output in expected])
    # Triton counts a request when it releases it, just after the answer is sent.
    after = counted(triton, metric(before, "nv_inference_count") + 2 * per_client)
    requests = metric(after, "nv_inference_count") - metric(before, "nv_inference_count")
    executions = metric(after, "nv_inference_exec_count") - metric(before, "nv_inference_exec_count")
    assert requests == 2 * per_client
    assert executions < requests, f"{requests} requests ran in {executions} executions: none were batched"


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_request_the_model_cannot_run_gets_its_own_error(
    triton: TritonProcess, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image size off the model's stride is refused as the request's fault (gRPC INVALID_ARGUMENT,
    HTTP 400), not failed as the server's (INTERNAL): a node charges it to the frames it carried, and
    inference stays available for every other stream."""
    port = triton.grpc_port if scheme == "grpc" else triton.http_port
    model = TritonModel(TritonEndpoint(scheme, f"127.0.0.1:{port}", MODEL), MODEL)
    model.connect()
    frame = Scene(seed=5, width=480, height=360).render(0)[0]
    try:
        with monkeypatch.context() as patch:
            off_the_stride = np.zeros((1, 3, 100, 100), np.uint8)
            patch.setattr(model, "_prepare", lambda served, images, imgsz: (off_the_stride, (100, 100)))
            with pytest.raises(TritonRefused, match="multiples of 32 pixels"):
                model.detect([frame])
        assert model.status.available
        assert len(model.detect([frame])) == 1  # and the model still serves
    finally:
        model.close()


def test_a_stopped_server_exits_cleanly_and_restarts_on_the_same_ports(triton: TritonProcess) -> None:
    """Cleanly: with status 0, and without a shared memory region of its own left in /dev/shm, not even
    one a killed backend stub left behind (which tritonserver does not remove)."""
    prefix = shm_region_prefix(triton.pid)
    assert list(SHM_DIR.glob(f"{prefix}*")), "the Python backend's regions are not named as the launcher asked"
    left_by_a_killed_stub = SHM_DIR / f"{prefix}m_0_0_stub_killed"
    left_by_a_killed_stub.write_bytes(bytes(4096))
    another_servers = SHM_DIR / f"{shm_region_prefix(triton.pid * 10)}m_0_0"  # segcast<pid>0_...: not ours
    another_servers.write_bytes(bytes(4096))
    try:
        assert triton.stop() == 0, triton.output()
        assert "segcast: stopping Triton\n" in triton.output()
        assert triton.output().rstrip().endswith("segcast: stopped"), "says it stopped, as `segcast serve` does"
        assert list(SHM_DIR.glob(f"{prefix}*")) == []
        assert another_servers.exists()
    finally:
        for region in (left_by_a_killed_stub, another_servers):
            region.unlink(missing_ok=True)
    assert not triton.ready()
    triton.start()
    client = grpc.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    try:
        assert client.is_model_ready(MODEL)
    finally:
        client.close()
    assert triton.output().count(f"triton: serving {MODEL} at {triton.grpc_url(MODEL)} and ") == 2


def test_a_model_that_fails_to_load_ends_the_server_with_its_reason(tmp_path: Path, served_onnx: Path) -> None:
    """A config matching its ONNX file, with a parameter the model cannot start with: tritonserver's
    own load fails, and the launcher's last line names the model."""
    require_triton_venv()
    model = tmp_path / "broken"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").symlink_to(served_onnx)
    (model / "config.pbtxt").write_text(
        'backend: "onnxruntime"\nparameters { key: "intra_op_thread_count" value { string_value: "many" } }\n'
    )
    server = TritonProcess(tmp_path)
    finished = subprocess.run(server.command(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("segcast: tritonserver exited with status"), finished.stderr
    assert "broken" in last


def test_a_repository_as_ultralytics_guide_writes_it_is_served(tmp_path: Path, served_onnx: Path) -> None:
    """No backend, inputs or outputs in config.pbtxt, only the metadata: completed from the ONNX file
    as NVIDIA's Triton does, and served batching (max_batch_size 8)."""
    model = tmp_path / "yolo"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").symlink_to(served_onnx)
    metadata = text_format.Parse((served_onnx.parents[1] / "config.pbtxt").read_text(), _model_config())
    text = metadata.parameters["metadata"].string_value
    (model / "config.pbtxt").write_text(f'parameters {{ key: "metadata" value {{ string_value: {text!r} }} }}\n')
    batch = letterboxed_batch(2, seed=4)
    with TritonProcess(tmp_path) as server:
        assert server.api("/v2/models/yolo/config")["max_batch_size"] == 8
        client = grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            images = grpc.InferInput("images", list(batch.shape), "UINT8")
            images.set_data_from_numpy(batch)
            result = client.infer("yolo", [images], outputs=requested(), client_timeout=CLIENT_TIMEOUT_S)
        finally:
            client.close()
    assert_same([result.as_numpy(name) for name in OUTPUTS], onnx_runtime(served_onnx, batch))


def _model_config() -> Any:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    return ModelConfig()


def test_a_repository_without_models_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_triton_venv()
    assert main(["serve", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"segcast: {tmp_path}: no models in this repository; write one with segcast export --format triton\n"
    )


def test_a_model_for_another_backend_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_triton_venv()
    (tmp_path / "resnet" / "1").mkdir(parents=True)
    (tmp_path / "resnet" / "config.pbtxt").write_text('platform: "pytorch_libtorch"\n')
    assert main(["serve", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'pytorch_libtorch' is not onnxruntime" in error


def test_a_missing_venv_names_the_setup_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path), "--venv", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "run `segcast triton setup` first" in error


def test_a_port_in_use_names_its_flag_before_the_repository_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading a repository starts ONNX in a subprocess per model; a port taken is known without it. The
    repository here would be refused, so a launcher that read it first would say that instead."""
    require_triton_venv()
    (tmp_path / "resnet" / "1").mkdir(parents=True)
    (tmp_path / "resnet" / "config.pbtxt").write_text('platform: "pytorch_libtorch"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http, metrics = free_ports(2)
        ports = ["--http-port", str(http), "--metrics-port", str(metrics)]
        assert main(["serve", str(tmp_path), *ports, "--grpc-port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error == f"segcast: cannot listen on 127.0.0.1:{port} (in use); choose another --grpc-port or --host\n"


def test_setup_on_an_installed_venv_checks_it_and_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    venv = require_triton_venv()
    installed = sorted(path.name for path in next(venv.glob("lib/python3.*/site-packages")).iterdir())
    assert main(["setup"]) == 0
    said = capsys.readouterr().out
    assert f"segcast: using the existing venv {venv}" in said
    assert "installing" not in said
    assert f"segcast: {' '.join(PACKAGES)} already installed in {venv}\n" in said
    assert sorted(path.name for path in next(venv.glob("lib/python3.*/site-packages")).iterdir()) == installed


def test_setup_refuses_a_folder_that_is_not_a_venv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["setup", "--venv", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--venv {tmp_path}: exists and is not a virtual environment" in error
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
