"""``segcast triton setup``: the virtual environment of its own that ``segcast triton serve`` runs tritonserver from.

The ``nvidia-pytriton`` wheel carries NVIDIA's ``tritonserver`` binary with only its Python backend.
`setup` installs that wheel, ONNX Runtime and numpy 1.x (`PACKAGES`) into a venv apart from segcast's
own, which has numpy 2, which the wheel refuses; `TritonInstall` finds the pieces of it the launcher
(`server.triton.cpu_server`) runs.

The venv must be made by the system's own ``python3``: the backend's stub process embeds the
distribution's ``libpython3.X.so``, so the standard library it finds must be that exact Python's. A
venv of another build of the same version (pyenv, conda) loads but fails inside the stub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
#: Checked together on Debian 12's Python 3.11: nvidia-pytriton brings tritonserver 2.51 and needs numpy 1.x.
PACKAGES = ("nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "numpy==1.26.4")


class TritonCpuError(Exception):
    """Setup or start-up cannot go on (the venv, the repository to convert, the launch); the message is one
    line naming the flag, folder or fix."""


def default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "segcast" / "triton-cpu"


@dataclass(frozen=True, slots=True)
class TritonInstall:
    """The pieces of nvidia-pytriton's tritonserver in a venv that ``serve`` runs."""

    venv: Path
    server: Path  # the tritonserver binary
    libs: Path  # the shared libraries the wheel bundles, for the backend and the stub
    backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for the venv's Python version

    @classmethod
    def find(cls, venv: Path) -> TritonInstall:
        """The install in ``venv``; `TritonCpuError` naming ``segcast triton setup`` when there is none."""
        packages = sorted(venv.glob("lib/python3.*/site-packages/pytriton/tritonserver"))
        if not (venv / "bin" / "python3").exists() or not packages:
            raise TritonCpuError(f"no Triton CPU install at {venv}: run `segcast triton setup` first (or give --venv)")
        root = packages[-1]
        version = root.parents[2].name.removeprefix("python")
        install = cls(
            venv=venv,
            server=root / "bin" / "tritonserver",
            libs=root.parents[1] / "nvidia_pytriton.libs",
            backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for path in (install.server, install.libs, install.backend / "libtriton_python.so", install.stub):
            if not path.exists():
                raise TritonCpuError(
                    f"{venv}: incomplete Triton install ({path.name} missing); rerun `segcast triton setup`"
                )
        return install


def setup(venv: Path) -> TritonInstall:
    """Create ``venv`` with the system Python and install `PACKAGES`; again on an existing one, a check."""
    if (venv / "pyvenv.cfg").exists():
        print(f"segcast: using the existing venv {venv}", flush=True)
    elif venv.exists() and any(venv.iterdir()):
        raise TritonCpuError(f"--venv {venv}: exists and is not a virtual environment; give an empty or new folder")
    else:
        if not Path(SYSTEM_PYTHON).exists():
            raise TritonCpuError(
                f"triton setup needs the system's {SYSTEM_PYTHON} (Debian/Ubuntu: apt-get install python3-venv)"
            )
        print(f"segcast: creating a venv with {SYSTEM_PYTHON} at {venv}", flush=True)
        made = subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", str(venv)], env=own_python_environment(), capture_output=True, text=True
        )
        if made.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            reason = (made.stderr.strip() or made.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise TritonCpuError(
                f"{SYSTEM_PYTHON} -m venv failed ({reason[0]}); on Debian/Ubuntu: apt-get install python3-venv"
            )
    python = venv / "bin" / "python3"
    missing = _missing_packages(python, venv)
    if missing:
        size = " (about 450 MB)" if PACKAGES[0] in missing else ""
        print(f"segcast: installing {' '.join(missing)} into {venv}{size}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *missing]
        if subprocess.run(pip, env=own_python_environment(), cwd=venv).returncode != 0:
            raise TritonCpuError(f"pip could not install {' '.join(missing)} into {venv}; its output is above")
    else:
        print(f"segcast: {' '.join(PACKAGES)} already installed in {venv}", flush=True)
    install = TritonInstall.find(venv)
    # The stub links the distribution's libpython; Debian ships it apart from the interpreter.
    probe = "import ctypes, sys; ctypes.CDLL('libpython%d.%d.so.1.0' % sys.version_info[:2]); import numpy, onnxruntime"
    checked = subprocess.run(
        [str(python), "-c", probe], env=own_python_environment(), cwd=venv, capture_output=True, text=True
    )
    if checked.returncode != 0:
        version = install.stub.parent.name
        raise TritonCpuError(
            f"the Triton stub needs libpython{version}.so.1.0: apt-get install libpython{version} "
            f"({checked.stderr.strip().splitlines()[-1] if checked.stderr.strip() else 'no output'})"
        )
    print(f"segcast: Triton CPU install ready in {venv}; serve a repository with `segcast triton serve DIR`")
    return install


def _missing_packages(python: Path, venv: Path) -> list[str]:
    """Those of `PACKAGES` the venv lacks at their pinned version (all of them in a new venv)."""
    probe = (
        "import sys\nfrom importlib.metadata import PackageNotFoundError, version\n"
        "for pin in sys.argv[1:]:\n    name, wanted = pin.split('==')\n    try:\n"
        "        found = version(name)\n    except PackageNotFoundError:\n        found = None\n"
        "    if found != wanted:\n        print(pin)\n"
    )
    # Run from the venv, so neither PYTHONPATH nor a project in the current folder shows it other packages.
    checked = subprocess.run(
        [str(python), "-c", probe, *PACKAGES], env=own_python_environment(), cwd=venv, capture_output=True, text=True
    )
    return checked.stdout.split() if checked.returncode == 0 else list(PACKAGES)


def own_python_environment() -> dict[str, str]:
    """This environment without PYTHONPATH and PYTHONHOME, which would lead the venv's Python (or
    the stub's) to segcast's packages or another Python's standard library."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
