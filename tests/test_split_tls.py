"""``segcast split`` of a file that speaks HTTPS: the entrance takes its certificate, held to what
``segcast serve`` would hold it to, and a split that turns TLS on or off goes ahead while the earlier
split's entrance runs (a real nginx, started and stopped as the split prints it)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from server.cli import main
from tests.support.certificates import self_signed
from tests.support.polling import eventually
from tests.support.ports import consecutive_free_ports, free_port
from tests.test_deploy import require_nginx
from tests.test_split import _entrance_commands, _nginx

CAMERAS = '[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n\n[[streams]]\nid = "b"\nuri = "scene:?seed=2"\n'
TLS = 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n'


def _config(folder: Path, server: str, port: int = 8090) -> Path:
    config = folder / "cams.toml"
    config.write_text(f"[server]\nport = {port}\n{server}\n{CAMERAS}")
    return config


@pytest.mark.parametrize(("given", "missing"), [("tls_cert", "tls_key"), ("tls_key", "tls_cert")])
def test_a_certificate_without_its_key_is_refused_as_serve_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, missing: str
) -> None:
    """The split said https and wrote an entrance speaking plain HTTP, which segcast serve refuses to."""
    self_signed(tmp_path)
    config = _config(tmp_path, f'{given} = "{given.removeprefix("tls_")}.pem"\n')
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert capsys.readouterr().err == (
        f"segcast: cams.toml sets [server] {given} without {missing}: they go together (the entrance speaks HTTPS "
        "with both, plain HTTP with neither); give both, as segcast serve would need\n"
    )
    assert sorted(path.name for path in tmp_path.glob("cams.*")) == ["cams.toml"]


def test_a_certificate_that_does_not_load_is_refused_before_nginx_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    self_signed(tmp_path)
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    config = _config(tmp_path, TLS)
    assert main(["split", str(config), "--nodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'segcast: cams.toml: [server] tls_cert = "{tmp_path / "cert.pem"}" / [server] tls_key = ')
    assert "not a PEM certificate and its key" in err
    assert sorted(path.name for path in tmp_path.glob("cams.*")) == ["cams.toml"]


@pytest.mark.parametrize("tls_before", [False, True], ids=["turned-on", "turned-off"])
async def test_tls_turned_on_or_off_while_the_earlier_entrance_runs_is_no_stranger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tls_before: bool
) -> None:
    """The split asked the running entrance over the new file's scheme: HTTPS of an entrance speaking
    HTTP (or HTTP of one speaking HTTPS) answered as a stranger, and the split was refused as if
    something else held the file's address."""
    require_nginx()
    self_signed(tmp_path)
    port = free_port()
    config = _config(tmp_path, TLS if tls_before else "", port)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0
    start, stop = _entrance_commands(capsys.readouterr().out)
    with _nginx(start, stop):
        base = f"{'https' if tls_before else 'http'}://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as session:

            async def answers() -> bool:
                try:
                    async with session.get(f"{base}healthz", ssl=False) as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(answers, what="the entrance to answer")
        _config(tmp_path, "" if tls_before else TLS, port)
        assert main(["split", str(config), "--nodes", "2", "--force"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "reload it: it must, to reach the nodes as they are now" in out
        assert f"then open {'http' if tls_before else 'https'}://127.0.0.1:{port}/" in out
