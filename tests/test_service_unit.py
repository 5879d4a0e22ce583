"""The systemd unit docs/service.md gives works as written: systemd takes it, segcast takes its command,
and every path segcast writes is one the unit lets it write.

A unit that systemd half ignores (a misspelt value is only a warning), a variable nothing reads, or
a stop limit below segcast's own would each pass unseen until a box misbehaved months later.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import ultralytics

import server
from server.cli import build_parser
from server.serve import EXIT_INFERENCE_ENDED, STOP_LIMIT_S
from tests.support.components import require_component

REPO = Path(__file__).resolve().parents[1]
SERVICE_DOC = REPO / "docs" / "service.md"
#: The unit's ExecStart names segcast in this virtual environment, which `systemd-analyze verify` needs to exist.
DOC_SEGCAST = "/opt/segcast/venv/bin/segcast"


def _ini_blocks() -> list[str]:
    return re.findall(r"^```ini\n(.*?)^```", SERVICE_DOC.read_text(), re.MULTILINE | re.DOTALL)


def _unit_text() -> str:
    [unit] = [block for block in _ini_blocks() if "[Service]" in block]
    return unit


def _settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each setting, in order, repeated keys (``Environment=``) each on its own."""
    section, found = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


def _service(key: str) -> list[str]:
    return [value for section, k, value in _settings(_unit_text()) if section == "Service" and k == key]


def _one(key: str) -> str:
    [value] = _service(key)
    return value


def _environment() -> dict[str, str]:
    """What the unit's ``Environment=`` lines set."""
    return dict(value.partition("=")[::2] for value in _service("Environment"))


def _seconds(value: str) -> float:
    """A systemd time span in the forms the doc may use: ``90``, ``90s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", value):
        total += int(number) * units[unit]
    return total


def _sources(package: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in package.rglob("*.py"))


def _writable(path: PurePosixPath) -> bool:
    """Whether the unit lets segcast write at ``path``: under its ``ReadWritePaths``, or its cache folder."""
    allowed = [PurePosixPath(p) for value in _service("ReadWritePaths") for p in value.split()]
    allowed += [PurePosixPath("/var/cache") / name for value in _service("CacheDirectory") for name in value.split()]
    return any(path == root or root in path.parents for root in allowed)


def test_systemd_takes_the_unit_without_a_word(tmp_path: Path) -> None:
    """`systemd-analyze verify` warns, and still exits 0, about a value it cannot parse or a key it does
    not know: the unit must draw no line about itself."""
    require_component(
        shutil.which("systemd-analyze") is not None, "systemd-analyze (Debian's systemd) is not installed"
    )
    segcast = Path(sys.executable).parent / "segcast"
    assert segcast.is_file(), "segcast's console script, installed beside this Python (pip install -e .)"
    unit = tmp_path / "segcast.service"
    unit.write_text(_unit_text().replace(DOC_SEGCAST, str(segcast)))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (verified.stdout + verified.stderr).splitlines() if "segcast.service" in line]
    assert verified.returncode == 0 and said == [], verified.stdout + verified.stderr


def test_the_unit_starts_segcast_serve_with_its_config_file() -> None:
    command = shlex.split(_one("ExecStart"))
    assert command[0] == DOC_SEGCAST
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve" and args.config == Path("/etc/segcast/segcast.toml")


def test_every_variable_the_unit_and_its_environment_file_set_is_read_by_segcast_or_ultralytics() -> None:
    env_files = [block for block in _ini_blocks() if "[" not in block]
    assert env_files, "docs/service.md shows the environment file"
    names = set(_environment())
    for block in env_files:
        names |= {line.lstrip("# ").partition("=")[0] for line in block.splitlines() if "=" in line}
    assert {"XDG_CACHE_HOME", "YOLO_CONFIG_DIR", "SEGCAST_ADMIN_TOKENS"} <= names
    read = _sources(Path(server.__file__).parent) + _sources(Path(ultralytics.__file__).parent)
    unread = sorted(name for name in names if f'"{name}"' not in read)
    assert unread == [], f"nothing reads {unread}"


def test_segcast_may_write_where_it_keeps_the_history_saves_and_models() -> None:
    """Under ``ProtectSystem=strict`` segcast writes only where the unit says: the config file's folder
    (saves write a new file there; the history is beside the config by default) and the model cache."""
    assert _one("ProtectSystem") == "strict"
    config = PurePosixPath(build_parser().parse_args(shlex.split(_one("ExecStart"))[1:]).config)
    assert _writable(config.parent)
    environment = _environment()
    models = PurePosixPath(environment["XDG_CACHE_HOME"]) / "segcast" / "models"  # `weights.cache_dir`
    assert _writable(models) and _writable(PurePosixPath(environment["YOLO_CONFIG_DIR"]))


def test_systemd_waits_for_segcasts_own_stop_limit_and_restarts_it_on_failure() -> None:
    assert _seconds(_one("TimeoutStopSec")) > STOP_LIMIT_S
    assert _one("Restart") == "on-failure"
    assert _one("EnvironmentFile") == "/etc/segcast/segcast.env"


def test_the_doc_names_the_status_segcast_exits_with_when_its_inference_thread_ends() -> None:
    assert f"exits with status {EXIT_INFERENCE_ENDED} for a service manager" in SERVICE_DOC.read_text()


BACKUPS_DOC = REPO / "docs" / "backups.md"
#: Where backups.md's examples write the copies: the backup's own folder, none of segcast's.
BACKUPS_FOLDER = PurePosixPath("/var/backups")


def _where_everything_is() -> list[PurePosixPath]:
    """The absolute paths in service.md's "Where everything is" table."""
    table = SERVICE_DOC.read_text().split("## Where everything is", 1)[1].split("\n## ", 1)[0]
    return [PurePosixPath(path) for path in re.findall(r"`(/[^`\s]+)`", table)]


def _host_shell_paths(doc: Path) -> set[PurePosixPath]:
    """The absolute paths in ``doc``'s ``sh`` blocks, but for commands run in a container (``docker ...``)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.MULTILINE | re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if not line.lstrip().startswith("docker ")]
    return {PurePosixPath(path) for line in lines for path in re.findall(r"(?<![\w.:/-])(/[\w.@/-]+)", line)}


def test_backups_md_backs_up_and_restores_the_files_where_service_md_puts_them() -> None:
    """backups.md backed up ``--config /etc/segcast/cams.toml`` and gave ``/var/lib/segcast/...`` to the
    backup's group, where the service service.md sets up keeps neither: an operator following both had
    commands that named no file of theirs."""
    known = _where_everything_is()
    assert PurePosixPath("/etc/segcast/segcast-events.db") in known

    def segcasts(path: PurePosixPath) -> bool:
        return any(path == where or where in path.parents or path == where.parent for where in known)

    paths = _host_shell_paths(BACKUPS_DOC)
    assert paths, "backups.md shows its commands"
    elsewhere = sorted(str(path) for path in paths if BACKUPS_FOLDER not in path.parents and not segcasts(path))
    assert elsewhere == [], f"backups.md names paths service.md does not set up: {elsewhere}"
