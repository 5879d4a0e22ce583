"""README.md's examples work as written: what a new user copies first must not need fixing."""

from __future__ import annotations

import re
from pathlib import Path

from server.config import load_config
from server.inference.models import DEFAULT_MODEL

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
