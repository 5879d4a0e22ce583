"""Named models: downloaded once into the user's cache with progress, or a one-line reason at once.

No test reaches the internet: the weights come from a stand-in server on 127.0.0.1 that serves the
bundled model's bytes (a real checkpoint of the same size as yolov8n-seg.pt) under the real name.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR
from server.inference import weights
from server.inference.models import BUNDLED_MODEL, ModelError, load_model, resolve_model_path
from tests.support.cli_in_process import run_cli
from tests.support.ports import free_port
from tests.support.weights_server import WeightsServer

NAME = "yolov8n-seg.pt"


@pytest.fixture
def checkpoint() -> bytes:
    return BUNDLED_MODEL.read_bytes()


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the folder segcast is started from, the user's cache folder), both empty."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return work, cache / "segcast" / "models"


def test_a_published_name_is_downloaded_once_into_the_user_cache_with_progress(
    checkpoint: bytes, places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work, cache = places
    with WeightsServer({NAME: checkpoint}) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, server.url)
        path = Path(resolve_model_path(NAME))
        said = capsys.readouterr().err
        assert path == cache / NAME and path.read_bytes() == checkpoint
        assert f"downloading {NAME} (6.7 MB) from 127.0.0.1 into {cache}" in said
        assert " 25% " in said and "100% 6.7 of 6.7 MB" in said, said
        assert list(work.iterdir()) == [], "nothing lands in the folder segcast was started from"
        assert [p.name for p in cache.iterdir()] == [NAME], "no partial file left behind"

        assert resolve_model_path(NAME) == str(path)
        assert server.requests == [f"/{NAME}"], "the second start uses the cache"
        assert capsys.readouterr().err == ""
    assert load_model(NAME).task == "segment"


def test_offline_start_stops_at_once_with_one_line_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    refused = free_port()  # nothing listens there: the connection is refused, like a machine offline
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, f"http://127.0.0.1:{refused}/")
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", NAME, "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR
    line = exited.one_error_line
    assert line.startswith(f"segcast: --model {NAME}: could not download it (127.0.0.1 unreachable: ")
    assert "--model bundled" in line and str(tmp_path / "cache" / "segcast" / "models") in line
    assert list(tmp_path.iterdir()) == [], "nothing written, neither here nor in the cache"


def test_a_mirror_url_without_a_trailing_slash_is_a_folder_the_name_goes_in(
    checkpoint: bytes, places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SEGCAST_WEIGHTS_URL=http://host/models`` means the folder ``models``, as with the slash: joined as
    text, the name would be asked for as ``/modelsyolov8n-seg.pt``."""
    _, cache = places
    with WeightsServer({f"models/{NAME}": checkpoint}) as server:
        monkeypatch.setenv(weights.WEIGHTS_URL_ENV, f"{server.url}models")
        assert weights.fetch(NAME) == cache / NAME
    assert server.requests == [f"/models/{NAME}"]


def test_a_server_error_is_reported_once_not_retried(
    checkpoint: bytes, places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache = places
    with WeightsServer({NAME: checkpoint}, status=503) as server:
        with pytest.raises(weights.DownloadError, match="answered 503"):
            weights.fetch(NAME, base_url=server.url)
        assert len(server.requests) == 1
    assert not cache.exists() or not any(cache.iterdir())


def test_a_cut_download_or_a_page_that_is_not_a_model_is_never_cached(
    checkpoint: bytes, places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache = places
    cut = WeightsServer({NAME: checkpoint}, cut_after=1_000_000)
    with cut, pytest.raises(weights.DownloadError, match=r"stopped after 1\.0 of 6\.7 MB"):
        weights.fetch(NAME, base_url=cut.url)
    portal = WeightsServer({NAME: b"<html>Sign in to the Wi-Fi</html>" * 10})
    with portal, pytest.raises(weights.DownloadError, match="not a PyTorch model"):
        weights.fetch(NAME, base_url=portal.url)
    assert list(cache.iterdir()) == [], "neither a partial file nor the page is kept"


def test_a_dns_that_never_answers_is_given_up_on(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    answer = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hanging_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        if host == "weights.invalid":
            answer.wait(30)
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    monkeypatch.setattr(weights, "RESOLVE_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(weights.DownloadError, match="no answer from DNS"):
            weights.fetch(NAME, base_url="http://weights.invalid/")
    finally:
        answer.set()


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999/", "http://127.0.0.1/a b/"])
def test_a_malformed_mirror_url_is_blamed_on_its_variable(
    url: str, places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``http://[::1`` ended as ``--model yolov8n-seg.pt: cannot load it (Invalid IPv6 URL)``."""
    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, url)
    blamed = rf"^--model {NAME}: could not download it \(SEGCAST_WEIGHTS_URL: expected an http\(s\) URL, got "
    with pytest.raises(ModelError, match=blamed):
        resolve_model_path(NAME)


def test_a_name_ultralytics_does_not_publish_is_no_such_file(places: tuple[Path, Path]) -> None:
    with pytest.raises(ModelError, match=r"^--model yolov8n-sge\.pt: no such file or folder, nor a model"):
        resolve_model_path("yolov8n-sge.pt")


def test_the_cache_follows_xdg_cache_home_or_defaults_to_the_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/cache")
    assert weights.cache_dir() == Path("/srv/cache/segcast/models")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.cache_dir() == Path.home() / ".cache" / "segcast" / "models"


def test_an_export_offline_suggests_only_what_export_takes(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export takes a .pt; the serving hint (".onnx file, or an OpenVINO folder") sent people to a refusal."""
    from server.inference.export import ExportError, export_model

    monkeypatch.setenv(weights.WEIGHTS_URL_ENV, f"http://127.0.0.1:{free_port()}/")  # refused, as offline
    work, _ = places
    with pytest.raises(ExportError) as refused:
        export_model(NAME, "onnx", work / "out", None)
    assert f"--model {NAME}: could not download it (" in str(refused.value)
    assert "--model bundled (the demo model) or a local .pt file" in str(refused.value)
    assert ".onnx" not in str(refused.value) and "OpenVINO" not in str(refused.value)
