"""README.md's examples work as written: what a new user copies first must not need fixing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from server.config import load_config
from server.inference.export import REQUIREMENTS
from server.inference.models import DEFAULT_MODEL
from server.triton.transport import SCHEMES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Unquoted, these make a shell do something else: zsh stops with "no matches found" on a word with
#: ? * or [, and a lone & puts the command so far in the background.
SHELL_SPECIAL = "?*[&"


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)


def unquoted_specials(line: str) -> list[str]:
    """The characters of ``line`` a shell would expand or act on: outside quotes, before any comment."""
    found, quote, escaped, previous = [], "", False, " "
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                escaped = True
        elif char in "'\"":
            quote = char
        elif char == "\\":
            escaped = True
        elif char == "#" and previous.isspace():
            break
        elif char == "&" and ("&&" in line[max(0, index - 1) : index + 2] or previous.isspace()):
            pass  # a list of commands, or one put in the background on purpose
        elif char in SHELL_SPECIAL:
            found.append(char)
        previous = char
    return found


def config_example() -> str:
    """README's example of a whole config file (the other TOML blocks show one section each)."""
    [example] = [block for block in code_blocks(ROOT / "README.md", "toml") if block.startswith("[server]")]
    return example


def test_the_config_file_example_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(config_example())
    settings = load_config(path)
    assert settings.model == DEFAULT_MODEL
    assert [s.stream_id for s in settings.streams] == ["front", "yard"]
    assert settings.media_dirs == (), "a folder that must exist is left for the user to uncomment"


def test_every_config_section_shown_loads_as_written(tmp_path: Path) -> None:
    for index, block in enumerate(code_blocks(ROOT / "README.md", "toml")):
        path = tmp_path / f"example-{index}.toml"
        path.write_text(block)
        load_config(path)


def test_the_config_file_example_asks_only_for_classes_the_default_model_knows(tmp_path: Path) -> None:
    """The start checks each stream's classes against the model; the default one knows the COCO classes."""
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    (tmp_path / "segcast.toml").write_text(config_example())
    coco = set(YAML.load(check_yaml("coco.yaml"))["names"].values())
    settings = load_config(tmp_path / "segcast.toml")
    asked = {name for stream in settings.streams for name in stream.options.classes}
    assert asked and asked <= coco, f"not classes of {DEFAULT_MODEL}: {sorted(asked - coco)}"


def test_shell_examples_quote_what_a_shell_would_expand() -> None:
    assert unquoted_specials("segcast serve --source scene:?seed=3") == ["?"]
    assert unquoted_specials("curl 'localhost:8080/a?b=1&c=2' && echo done  # why?") == []
    for path in DOCS:
        for block in code_blocks(path, "sh"):
            for line in block.splitlines():
                assert unquoted_specials(line) == [], f"{path.name}: quote it: {line}"


def test_install_hints_name_the_form_that_works_from_a_checkout() -> None:
    """segcast is installed from its folder, not from PyPI: ``pip install 'segcast[onnx]'`` finds nothing."""
    texts = [*DOCS, *sorted((ROOT / "server").rglob("*.py"))]
    wrong = [path.name for path in texts if re.search(r"pip install ['\"]?segcast\[", path.read_text())]
    assert wrong == []


#: The extra a served model needs by the form of its ``--model``, as the error a missing one stops
#: the start with names it (`server.inference.models._check_runtime`, `server.triton.transport.require_client`).
MODEL_EXTRAS = {**{f"{scheme}://": "triton" for scheme in SCHEMES}, ".onnx": "onnx", "_openvino_model": "openvino"}


def extras_needed(command: str) -> set[str]:
    """The optional extras a ``segcast`` shell command needs beyond ``pip install .``."""
    words = shlex.split(command, comments=True)
    if "segcast" not in words:
        return set()
    words = words[words.index("segcast") + 1 :]
    needed = set()
    if words[:1] == ["export"] and "--format" in words:
        needed.add(REQUIREMENTS[words[words.index("--format") + 1]][1])
    if words[:1] != ["export"] and "--model" in words:
        model = words[words.index("--model") + 1]
        needed |= {extra for form, extra in MODEL_EXTRAS.items() if model.startswith(form) or model.endswith(form)}
    return needed


def extras_installed(command: str) -> set[str] | None:
    """The extras a ``pip install`` of the checkout installs (None: the command installs no checkout)."""
    found = re.search(r"pip install (?:-e )?'?\.(?:\[([\w,]*)\])?'?(?:\s|$)", command)
    if found is None:
        return None
    return set(filter(None, (found.group(1) or "").split(",")))


def test_extras_needed_reads_what_a_command_needs() -> None:
    assert extras_needed("segcast export --format triton --out models  # a repository") == {"onnx"}
    assert extras_needed("segcast export --model yard.pt --format openvino") == {"openvino"}
    assert extras_needed("segcast serve --model grpc://127.0.0.1:8001/m --source 'scene:?seed=1' &") == {"triton"}
    assert extras_needed("X=1 segcast serve --model yard.onnx") == {"onnx"}
    assert extras_needed("segcast serve --model bundled") == set()
    assert extras_installed("pip install '.[triton,onnx]'   # why") == {"triton", "onnx"}
    assert extras_installed("pip install . && segcast demo") == set()
    assert extras_installed("pip install -e '.[test]' && pytest") == {"test"}
    assert extras_installed("segcast demo") is None


def test_a_walkthrough_that_installs_segcast_installs_the_extras_its_commands_need() -> None:
    """A block of shell commands that starts with ``pip install '.[...]'`` is copied as a whole:
    every command after it must run with what it installed (the Triton walk-through once installed
    only the client, and its very next command, the export, stopped asking for ``.[onnx]``)."""
    for path in DOCS:
        for block in code_blocks(path, "sh"):
            installed: set[str] | None = None
            for command in block.replace("\\\n", " ").splitlines():
                if (installs := extras_installed(command)) is not None:
                    installed = installs
                if installed is not None:
                    missing = extras_needed(command) - installed
                    assert not missing, f"{path.name}: {command.strip()!r} needs {sorted(missing)}, not installed"


def test_a_container_that_publishes_its_port_listens_beyond_the_container() -> None:
    """``docker run -p`` forwards to the container's own address: a segcast inside listening on
    127.0.0.1 (the default, and the example config's ``host``) cannot be reached through it."""
    checked = 0
    for path in DOCS:
        for block in code_blocks(path, "sh"):
            for command in block.replace("\\\n", " ").splitlines():
                words = shlex.split(command, comments=True)
                if words[:2] != ["docker", "run"] or "-p" not in words or "serve" not in words:
                    continue
                checked += 1
                given = words[words.index("serve") :]
                assert "--host" in given and given[given.index("--host") + 1] == "0.0.0.0", (
                    f"{path.name}: {command.strip()!r} needs --host 0.0.0.0"
                )
    assert checked >= 2, "README's docker run examples were not found"


def test_the_embed_example_says_which_origins_may_frame_it_before_the_snippet() -> None:
    """A page of another origin (or a file) framing ``/embed/<id>`` gets the browser's own "refused to
    connect" until its origin is in ``[server] embed_origins``: a reader copying the first ``<iframe``
    must have been told so first, with the entry a file needs."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Embedding") :]
    before = section[: section.index("<iframe")]
    assert "`[server] embed_origins`" in before
    assert '"file:"' in before
    assert "its own error" in before, "that the refusal is the browser's, not segcast's"


def test_the_webrtc_functions_readme_offers_are_exported_by_the_module() -> None:
    """README offered ``playStream()`` after it stopped being exported: a page importing it did not load."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    offered = re.search(r"`web/webrtc\.js` offers (.+?)\(WebRTC where", readme, re.S)
    assert offered is not None, "README's list of what web/webrtc.js offers"
    names = re.findall(r"`(\w+)\(\)`", offered.group(1))
    module = (ROOT / "web" / "webrtc.js").read_text(encoding="utf-8")
    exported = set(re.findall(r"^export (?:async )?(?:function|class) (\w+)", module, re.M))
    assert names and set(names) <= exported, f"offered {names}, exported {sorted(exported)}"


def test_every_serve_command_shown_starts_a_server_as_written() -> None:
    """A phone's section showed ``segcast serve --model bundled``, which stops at once asking for a camera:
    each ``segcast serve`` the docs show has what serve needs (a config file or a --source)."""
    from server.cli import build_parser, settings_from_args
    from server.config_values import ConfigError

    shown = [
        line.partition(" #")[0].strip().removesuffix("&").strip()
        for path in DOCS
        for block in code_blocks(path, "sh")
        for line in block.splitlines()
        if line.startswith("segcast serve") and "..." not in line
    ]
    assert len(shown) >= 6, shown  # the extraction finds them
    for command in shown:
        args = build_parser().parse_args(shlex.split(command)[1:])
        try:
            settings_from_args(args)
        except ConfigError as refused:  # a file or camera of the example's own, absent here, is fine
            assert "serve needs" not in str(refused), command
