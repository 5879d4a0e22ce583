"""HTTPS with ``--tls-cert``/``--tls-key``: the viewer, API and WebSocket over TLS, and one-line errors.

The certificate is generated here, self-signed for 127.0.0.1, and the client trusts exactly it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from server.cli import ssl_context
from server.config import load_config
from server.config_values import ConfigError
from server.persist import write_config
from tests.support.certificates import self_signed
from tests.support.cli_in_process import run_cli
from tests.support.ports import free_port
from tests.support.segcast_process import REPO, SHUTDOWN_BOUND_S, SegcastProcess


async def test_viewer_api_and_websocket_are_served_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = SegcastProcess(
        "--model",
        "bundled",
        "--source",
        "cam=scene:?seed=1",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        scheme="https",
    )
    trust = ssl.create_default_context(cafile=str(cert))
    server.start()
    try:
        await asyncio.to_thread(server.wait_until_healthy, trust)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            async with session.get(f"{server.base_url}/api/streams") as response:
                assert [s["id"] for s in (await response.json())["streams"]] == ["cam"]
            async with session.ws_connect(f"wss://127.0.0.1:{server.port}/ws") as ws:
                await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "clean"})
                while (await ws.receive(timeout=30)).type is not aiohttp.WSMsgType.BINARY:
                    pass  # until the first JPEG: frames flow over WSS
            async with session.ws_connect(f"wss://127.0.0.1:{server.port}/ws") as ws:
                hello = json.loads((await ws.receive(timeout=10)).data)
                assert hello["type"] == "hello"
            with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port gets nothing useful
                async with session.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                    response.raise_for_status()
        code, took_s, output = server.terminate(SHUTDOWN_BOUND_S)
    finally:
        server.kill()
    assert code == 0, output
    assert took_s < SHUTDOWN_BOUND_S


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--tls-cert", "/no/such/cert.pem", "--tls-key", "/no/such/key.pem"], "--tls-cert /no/such/cert.pem"),
        (["--tls-cert", "CERT"], "give both"),
        (["--tls-cert", "KEY", "--tls-key", "KEY"], "PEM"),
    ],
)
def test_unusable_tls_files_stop_the_start_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    cert, key = self_signed(tmp_path)
    flags = [str(cert) if f == "CERT" else str(key) if f == "KEY" else f for f in flags]
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", "bundled", *flags, "--port", str(free_port()))
    assert exited.code == 2
    line = exited.one_error_line
    assert line.startswith("segcast: ") and named in line, exited.err


def test_a_process_given_unusable_tls_files_exits_with_that_one_line_alone() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--source", "scene:", "--model", "bundled", "--tls-cert", "/no/cert"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcast: ") and "give both" in lines[0], result.stderr


def test_tls_files_in_the_config_file_are_relative_to_it_and_survive_a_save(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "videos").mkdir()
    path = tmp_path / "segcast.toml"
    path.write_text(
        '[server]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\nmedia_dirs = ["videos"]\nallow_devices = true\n'
    )
    settings = load_config(path)
    assert (settings.tls_cert, settings.tls_key) == (cert.resolve(), key.resolve())
    assert ssl_context(settings) is not None
    write_config(settings, [])
    again = load_config(path)
    assert (again.tls_cert, again.tls_key, again.media_dirs, again.allow_devices) == (
        settings.tls_cert,
        settings.tls_key,
        settings.media_dirs,
        True,
    )


def test_a_readable_file_that_is_not_pem_is_said_to_be_so(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """``ssl.SSLError`` is an ``OSError``: every TLS error was "cannot read them", even for files that read."""
    cert, _ = self_signed(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not a key\n")
    flags = ["--tls-cert", str(cert), "--tls-key", str(text)]
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", "bundled", *flags, "--port", str(free_port()))
    assert exited.code == 2
    assert exited.one_error_line == (
        f"segcast: --tls-cert {cert} / --tls-key {text}: not a PEM certificate and its key (they begin "
        "-----BEGIN CERTIFICATE----- and -----BEGIN ... PRIVATE KEY-----)"
    )


def test_a_key_of_another_certificate_is_said_to_be_so(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = self_signed(tmp_path / "a")
    _, other_key = self_signed(tmp_path / "b")
    path = tmp_path / "segcast.toml"
    path.write_text(f'[server]\ntls_cert = "{cert}"\ntls_key = "{other_key}"\n')
    with pytest.raises(ConfigError) as refused:
        ssl_context(load_config(path))
    assert str(refused.value).endswith(": the key is not the certificate's (give the key it was made with)")


def test_tls_files_the_config_file_gave_are_named_by_its_keys(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The message named --tls-cert and --tls-key, flags never given."""
    config = tmp_path / "segcast.toml"
    config.write_text('[server]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n\n[[streams]]\nid = "a"\nuri = "scene:"\n')
    exited = run_cli(capfd, "serve", "--config", str(config), "--port", str(free_port()), "--log-level", "ERROR")
    assert exited.code == 2
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert exited.one_error_line == (
        f'segcast: [server] tls_cert = "{cert}" / [server] tls_key = "{key}": cannot read them (No such file or '
        "directory)"
    )
    (tmp_path / "flag").mkdir()
    _, flag_key = self_signed(tmp_path / "flag")
    exited = run_cli(capfd, "serve", "--config", str(config), "--tls-key", str(flag_key), "--port", str(free_port()))
    assert exited.one_error_line.startswith(f'segcast: [server] tls_cert = "{cert}" / --tls-key {flag_key}: '), (
        "each file named where it was given"
    )
