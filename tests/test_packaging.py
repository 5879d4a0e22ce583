"""What `pip install .` ships: every package of the server, the viewer and the bundled model.

The package list in pyproject.toml is explicit (the viewer lives in ``web/`` at the top level and is
mapped into ``server.web``), so a new subpackage that is not added there would be missing from a
non-editable install while every test of an editable one still passed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_server_subpackage_is_listed() -> None:
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "server").rglob("__init__.py")}
    listed = set(_setuptools()["packages"])  # type: ignore[arg-type]
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_viewer_files_and_model_are_package_data() -> None:
    settings = _setuptools()
    assert settings["package-dir"] == {"server.web": "web"}
    patterns = settings["package-data"]["server.web"]  # type: ignore[index]
    for path in (ROOT / "web").iterdir():
        assert any(path.match(p) for p in patterns), f"web/{path.name} would not be installed"
    assert "*.pt" in settings["package-data"]["server.data"]  # type: ignore[index]
