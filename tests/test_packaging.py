"""What `pip install .` ships and installs: every package of the server, the viewer, the bundled
model, and every library the server imports.

The package list in pyproject.toml is explicit (the viewer lives in ``web/`` at the top level and is
mapped into ``server.web``), so a new subpackage that is not added there would be missing from a
non-editable install while every test of an editable one still passed. Likewise the suite runs with
the test extra installed, so a library the server imports but only a test extra declares passes
every test and fails a user's `pip install . && segcast demo` at its first import (scipy did).
"""

from __future__ import annotations

import ast
import hashlib
import sys
import tomllib
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: Libraries the server imports only for an optional feature, and the extra that installs each.
#: ``triton_python_backend_utils`` exists only inside Triton's Python backend, where
#: server/triton/python_model.py runs (in the venv `segcast triton setup` makes).
OPTIONAL_IMPORTS = {
    "aiomqtt": "mqtt",
    "paho": "mqtt",  # paho-mqtt, the client aiomqtt wraps: its reason codes
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "tritonclient": "triton",
    "google": "triton",  # protobuf, through tritonclient[grpc]
    "rapidjson": "triton",  # python-rapidjson, through tritonclient[http]
    "geventhttpclient": "triton",  # through tritonclient[http]
    "triton_python_backend_utils": None,
}


#: The newest setuptools that cannot read a license expression (``license = "AGPL-3.0-only"``, PEP 639;
#: 77.0.0 was the first that could): a build with it stops at pyproject.toml.
SETUPTOOLS_WITHOUT_LICENSE_EXPRESSIONS = "76.1.0"
#: SHA-256 of https://www.gnu.org/licenses/agpl-3.0.txt: the FSF's text, which may not be changed.
AGPL_3_0_SHA256 = "0d96a4ff68ad6d4b6f1f30f713b18d5184912ba8dd389f86aa7710db079abcb0"
#: What setuptools ships as license files when pyproject.toml names none (``license-files``).
DEFAULT_LICENSE_FILES = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")


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


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _installed_by(requirements: list[str]) -> set[str]:
    """The distributions installing ``requirements`` brings: them and, recursively, what they require
    (with the extras they ask for; markers evaluated for this interpreter), as installed here."""
    todo = [Requirement(text) for text in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        names.add(key[0])
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            required = Requirement(text)
            wanted = required.marker is None or any(
                required.marker.evaluate({"extra": extra}) for extra in ("", *requirement.extras)
            )
            if wanted:
                todo.append(required)
    return names


def _server_imports() -> set[str]:
    """Top-level names of the third-party modules anything in server/ imports when it runs: an import
    under ``if TYPE_CHECKING:`` is the type checker's (``_typeshed``, say, which nothing installs)."""
    names: set[str] = set()
    for path in (ROOT / "server").rglob("*.py"):
        _RuntimeImports(names).visit(ast.parse(path.read_text(), str(path)))
    return names - set(sys.stdlib_module_names) - {"server"}


class _RuntimeImports(ast.NodeVisitor):
    """Adds to ``names`` the top-level module of each import made at run time."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names |= {alias.name.split(".")[0] for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.names.add(node.module.split(".")[0])


def test_every_library_the_server_imports_is_installed_by_its_dependencies_or_its_extra() -> None:
    project = _project()
    runtime = _installed_by(project["dependencies"])  # type: ignore[arg-type]
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    providers = metadata.packages_distributions()
    missing = []
    for module in sorted(_server_imports()):
        extra = OPTIONAL_IMPORTS.get(module, "")
        if extra is None:
            continue
        assert module in providers, f"{module} is not installed here: the test cannot tell where it comes from"
        given = runtime | _installed_by(extras[extra]) if extra else runtime
        if not {canonicalize_name(d) for d in providers[module]} & given:
            missing.append(f"{module} ({', '.join(providers[module])})")
    assert not missing, f"imported by server/ but not installed by `pip install .`: {missing}"


def test_every_setuptools_the_build_admits_reads_the_license_expression() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str), "a license expression (PEP 639), not a table"
    requires = [Requirement(text) for text in pyproject["build-system"]["requires"]]
    [setuptools] = [r for r in requires if canonicalize_name(r.name) == "setuptools"]
    assert not setuptools.specifier.contains(SETUPTOOLS_WITHOUT_LICENSE_EXPRESSIONS), str(setuptools)


def test_the_declared_license_ships_verbatim_with_the_package() -> None:
    assert _project()["license"] == "AGPL-3.0-only"
    text = (ROOT / "LICENSE").read_bytes()
    assert text.decode().split("\n")[:2] == [
        "                    GNU AFFERO GENERAL PUBLIC LICENSE",
        "                       Version 3, 19 November 2007",
    ]
    assert hashlib.sha256(text).hexdigest() == AGPL_3_0_SHA256, "LICENSE must be the FSF's text, unchanged"
    patterns: list[str] = _project().get("license-files", DEFAULT_LICENSE_FILES)  # type: ignore[assignment]
    assert any(fnmatch("LICENSE", pattern) for pattern in patterns), "LICENSE would not be in the wheel"
