"""What the suite sets up for itself before any test runs (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pytorchs_threads_are_told_to_wait_without_spinning_before_pytorch_loads() -> None:
    """OpenMP reads OMP_WAIT_POLICY once, as PyTorch loads: conftest's setting counts only if importing
    conftest loads no PyTorch (three model tests at once took three times as long spinning)."""
    assert "OMP_WAIT_POLICY" in os.environ
    probe = "import sys, tests.conftest; print(sorted({'torch', 'ultralytics'} & set(sys.modules)))"
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
