"""docs/upgrading.md, the notes for people running an earlier segcast, holds for this version: it is
written for the version segcast says it is, its commands fit the image and the Compose file, every
start-up refusal it quotes is the line segcast prints, and README and deploy/README.md lead to it."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from server.cli import EXIT_STARTUP_ERROR
from tests.support.cli_in_process import run_cli
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
UPGRADING = ROOT / "docs" / "upgrading.md"
#: What every segcast before the first upgrade notes called itself, whatever its date.
EARLIER_VERSION = Version("0.1.0")
#: The config file each quoted refusal is made from, as the table's lines name it.
CONFIG_NAME = "cams.toml"
#: The stream a quoted stream setting is given to, as the lines name it.
STREAM_TABLE = '[[streams]]\nid = "gate"\n'
#: What starts each line quoted for a source URI (the table gives what follows).
URI_LINE_START = f"segcast: {CONFIG_NAME}: streams[0] (id 'gate').uri: "
#: What leads to the notes' two tables of start-up refusals: source URIs, then other settings.
URIS_TABLE = "Every stream's source URI is checked"
SETTINGS_TABLE = "Other settings an earlier segcast took"


def notes() -> str:
    """The upgrade notes, read anew by each test: what a reader sees now."""
    return UPGRADING.read_text()


def project_version() -> Version:
    return Version(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def table_after(text: str, lead: str) -> list[tuple[str, str, str]]:
    """The rows of the first table after ``lead``: its first cell, that cell's code, and the last cell's code."""
    lines = text[text.index(lead) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        first, last = line.strip("| ").split(" | ")
        rows.append((first, code_of(first), code_of(last)))
    return rows


def quoted(lead: str) -> list[tuple[str, str, str]]:
    """`table_after` for collecting tests: none where the notes lack the table (a test then says so)."""
    try:
        return table_after(notes(), lead)
    except (OSError, ValueError, StopIteration):
        return []


def code_of(cell: str) -> str:
    """The first code in a table's cell: what is given, or what segcast says."""
    found = re.match(r"[^`]*`([^`]+)`", cell)
    assert found is not None, f"no code in the cell {cell!r}"
    return found.group(1)


def config_of(setting: str) -> str:
    """The config file a table's setting makes: ``[table] key = value`` in that table, a top-level key as
    it is, anything else a key of stream ``gate`` (of a generated scene, unless it is the ``uri``)."""
    if table := re.match(r"(\[\[?[\w.]+\]\]?) (.*)", setting):
        return f"{table.group(1)}\n{table.group(2)}\n"
    if setting.startswith("auth "):
        return f"{setting}\n"
    uri = "" if setting.startswith("uri ") else 'uri = "scene:"\n'
    return f"{STREAM_TABLE}{uri}{setting}\n"


def refusal(capfd: pytest.CaptureFixture[str], tmp_path: Path, config: str) -> str:
    """The one line ``segcast serve --config cams.toml`` stops with, the file holding ``config``."""
    path = tmp_path / CONFIG_NAME
    path.write_text(config)
    exited = run_cli(capfd, "serve", "--config", str(path), "--model", "bundled", "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR, exited.out + exited.err
    return exited.one_error_line


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation but ``-`` and ``_`` dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)}


def links(path: Path) -> list[str]:
    """The relative links of a Markdown file (no scheme, no page-local anchor)."""
    found = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [link for link in found if not re.match(r"\w+:", link) and not link.startswith("#")]


def test_the_notes_are_for_the_version_segcast_says_it_is() -> None:
    """Every segcast said 0.1.0, so an upgrade could not be told from the version it had; the newest
    notes are this version's, and the installed segcast (--version, MQTT's sw_version) says the same."""
    [newest, *_] = re.findall(r"^## (\d+\.\d+\.\d+)(?: \(in development\))?$", notes(), re.MULTILINE)
    assert Version(newest) == Version(project_version().base_version)
    in_development = re.search(rf"^## {re.escape(newest)} \(in development\)$", notes(), re.MULTILINE) is not None
    assert in_development == project_version().is_devrelease, "a development version's notes say so, a release's not"
    assert project_version() > EARLIER_VERSION
    assert Version(metadata.version("segcast")) == project_version(), "reinstall: pip install -e ."


def test_the_notes_links_lead_to_pages_and_headings_there_are() -> None:
    for link in links(UPGRADING):
        page, _, anchor = link.partition("#")
        target = (UPGRADING.parent / page).resolve()
        assert target.is_file(), link
        assert not anchor or anchor in anchors(target), link


#: Where people install segcast or its image, each of which leads to the notes.
LEADING_SECTIONS = [
    ("README.md", "## Try it"),
    ("README.md", "## Docker"),
    ("deploy/README.md", "## The segcast image"),
]


@pytest.mark.parametrize(("page", "section"), LEADING_SECTIONS)
def test_installing_and_the_image_lead_to_the_notes(page: str, section: str) -> None:
    path = ROOT / page
    text = path.read_text()
    body = text[text.index(f"{section}\n") + len(section) :].split("\n## ", 1)[0]
    led = [link for link in links(path) if f"]({link})" in body and link.partition("#")[0].endswith("upgrading.md")]
    assert led, f"{page}: {section} does not link docs/upgrading.md"
    for link in led:
        page_link, _, anchor = link.partition("#")
        assert (path.parent / page_link).resolve() == UPGRADING
        assert not anchor or anchor in anchors(UPGRADING), link


def dockerfile(instruction: str) -> str:
    """The arguments of the Dockerfile's one ``instruction`` (USER, VOLUME, ENTRYPOINT)."""
    [arguments] = re.findall(rf"^{instruction} (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return arguments


def option(words: list[str], name: str) -> str:
    """The value of option ``name`` in a command's ``words``."""
    assert name in words, f"{name} missing: {shlex.join(words)}"
    return words[words.index(name) + 1]


def chown_commands() -> list[list[str]]:
    """The notes' shell commands that give folders to segcast's user, as a shell splits them."""
    blocks = re.findall(r"^```sh\n(.*?)^```", notes(), re.MULTILINE | re.DOTALL)
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines() if "chown" in line]


def test_the_chown_commands_give_the_image_users_folders_to_its_uid() -> None:
    """The image's user, its volume and its entry point (which a plain ``IMAGE chown`` would be handed to
    as a segcast command) and the Compose file's repository volume, as the Dockerfile and compose.yaml say."""
    user = dockerfile("USER")
    [volume] = dockerfile("VOLUME").split()
    assert json.loads(dockerfile("ENTRYPOINT")) == ["segcast"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    [repository] = compose["services"]["export"]["volumes"]
    volume_name, mount = repository.split(":")
    docker_run, host_folder, compose_run = chown_commands()

    assert docker_run[:2] == ["docker", "run"]
    assert option(docker_run, "--user") == "0" and option(docker_run, "--entrypoint") == "chown"
    assert option(docker_run, "-v").endswith(f":{volume}")
    assert docker_run[-3:] == ["-R", user, volume]
    assert host_folder[:2] == ["sudo", "chown"] and host_folder[2:4] == ["-R", user]
    assert compose_run[compose_run.index("compose") :][:2] == ["compose", "run"]
    assert option(compose_run, "--user") == "0"
    assert compose_run[compose_run.index("--entrypoint") + 1 :] == ["chown", "export", "-R", user, mount]
    assert f"`{volume_name}`" in notes() and f"`{compose['name']}_{volume_name}`" in notes()


def test_the_notes_quote_the_refusals_an_earlier_segcast_started_with() -> None:
    """What a review of upgrading found: configs that started before and now stop the start."""
    uris = " ".join(uri for _, uri, _ in table_after(notes(), URIS_TABLE))
    for found in ("#timeout=900", "#fps=2000", ":70000/", "#transport=quic", "ftp://"):
        assert found in uris
    settings = " ".join(setting for _, setting, _ in table_after(notes(), SETTINGS_TABLE))
    for found in ('host = ""', "embed_origins", 'auth = "off"', 'device = "cuda:0"'):
        assert found in settings


@pytest.mark.parametrize(("uri", "said"), [pytest.param(uri, said, id=uri) for _, uri, said in quoted(URIS_TABLE)])
def test_each_source_uri_the_notes_quote_stops_the_start_as_they_say(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, uri: str, said: str
) -> None:
    assert refusal(capfd, tmp_path, f'{STREAM_TABLE}uri = "{uri}"\n') == URI_LINE_START + said


@pytest.mark.parametrize(("cell", "setting", "said"), [pytest.param(*row, id=row[1]) for row in quoted(SETTINGS_TABLE)])
def test_each_setting_the_notes_quote_stops_the_start_as_they_say(
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cell: str,
    setting: str,
    said: str,
) -> None:
    if "PyTorch sees no GPU" in cell:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine's PyTorch sees a GPU")
    monkeypatch.delenv("SEGCAST_ADMIN_TOKENS", raising=False)
    monkeypatch.delenv("SEGCAST_VIEWER_TOKENS", raising=False)
    if "`SEGCAST_ADMIN_TOKENS` set" in cell:
        monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", "an-admin-token-of-some-length")
    assert refusal(capfd, tmp_path, config_of(setting)) == said
