"""CI cannot go green without the real components its tests drive (tests/support/components.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.components import REQUIRE_ENV, require_component, require_module

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"
README = CI_RUN.parents[1] / "README.md"


def test_a_missing_component_skips_by_hand_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs chromium"):
        require_component(False, "needs chromium")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="needs chromium"):
        require_component(False, "needs chromium")
    with pytest.raises(pytest.fail.Exception, match="needs a runtime"):
        require_module("no_such_package.sub", "needs a runtime")
    require_component(True, "present: nothing happens")
    assert require_module("json", "the standard library").dumps([]) == "[]"


def test_ci_requires_the_components_and_runs_the_readmes_test_command_verbatim() -> None:
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    command = re.search(r"```sh\n(pip install -e '\.\[test\]' && pytest)\n```", README.read_text())
    assert command is not None, "README.md gives the test command"
    assert command[1] in lines, ".ci/run runs it verbatim"
    assert f"export {REQUIRE_ENV}=1" in lines[: lines.index(command[1])], "set before the tests run"
