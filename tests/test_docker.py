"""The Dockerfile and .dockerignore, read rather than built (no Docker daemon runs where the tests run).

What is checked is what decides the image's size and whether its downloads persist: PyTorch comes from
the CPU-only wheel index (the default CUDA build is several GB for a CPU server) and is installed before
segcast so that segcast's install keeps it, and downloaded models land in the /models volume; also
what the build is sent (never deploy/.env's token), the user it runs as and its health check.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import yaml

from tests.support.http_stand_in import serving

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"
PYPROJECT = DOCKERFILE.parent / "pyproject.toml"
DOCKERIGNORE = DOCKERFILE.parent / ".dockerignore"
COMPOSE = DOCKERFILE.parent / "deploy" / "compose.yaml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
HEALTHCHECK_RUN_S = 30.0
REQUIREMENTS_RUN_S = 30.0


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.MULTILINE)]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in instructions() if kind == "ARG" and "=" in arg)


def pip_installs() -> list[list[str]]:
    """Each ``pip install`` command of the RUN steps, in order, with build arguments filled in."""
    return [words for _, words in pip_install_steps()]


def pip_install_steps() -> list[tuple[int, list[str]]]:
    """(index in `instructions`, arguments) of each ``pip install`` command of the RUN steps, in order."""
    commands = []
    for index, (kind, arguments) in enumerate(instructions()):
        if kind != "RUN":
            continue
        for key, value in build_args().items():
            arguments = arguments.replace(f'"${key}"', value).replace(f"${key}", value)
        for command in arguments.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                commands.append((index, words[2:]))
    return commands


def test_pytorch_comes_from_the_cpu_wheels_before_segcast_is_installed() -> None:
    installs = pip_installs()
    torch_step = next(i for i, words in enumerate(installs) if "torch" in words)
    segcast_step = next(i for i, words in enumerate(installs) if any(w == "." or w.startswith(".[") for w in words))
    assert torch_step < segcast_step, "segcast's install must find PyTorch already there, or it pulls CUDA"
    words = installs[torch_step]
    assert words[words.index("--index-url") + 1] == CPU_INDEX
    assert "torchvision" in words, "ultralytics needs torchvision, from the same index"
    for later in installs[torch_step + 1 :]:
        assert "--extra-index-url" not in later and "--index-url" not in later, "no second source of PyTorch"


def requirements_step() -> tuple[str, str, str]:
    """The Dockerfile's command that writes the requirements of segcast and its extras from
    pyproject.toml: its Python code, its extras argument (``.[a,b]``) and the file it writes."""
    [step] = [arguments for kind, arguments in instructions() if kind == "RUN" and "tomllib" in arguments]
    python, flag, code, extras, redirect, written = shlex.split(step.split("&&")[0])
    assert (python, flag, redirect) == ("python", "-c", ">")
    assert ["-r", written] in pip_installs(), "the file written is the one installed"
    return code, extras, written


def image_requirements() -> list[str]:
    """What the Dockerfile's dependencies step installs, from its own code run on pyproject.toml."""
    code, extras, _ = requirements_step()
    result = subprocess.run(
        [sys.executable, "-c", code, extras],
        cwd=PYPROJECT.parent,
        capture_output=True,
        text=True,
        timeout=REQUIREMENTS_RUN_S,
        check=True,
    )
    return result.stdout.splitlines()


def image_extras() -> set[str]:
    return set(requirements_step()[1].removeprefix(".[").removesuffix("]").split(","))


def test_the_image_gets_segcasts_dependencies_and_its_extras_as_pip_would() -> None:
    """The dependencies are installed from pyproject.toml alone (segcast's code comes after, with
    ``--no-deps``): every one of segcast's and of its extras', nothing more, one per line."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    assert image_extras() <= set(extras), "an extra pyproject.toml does not have"
    expected = project["dependencies"] + [requirement for extra in image_extras() for requirement in extras[extra]]
    assert sorted(image_requirements()) == sorted(expected)
    assert any(words[:2] == ["--no-deps", "."] for words in pip_installs()), "segcast itself, adding nothing"


def test_a_change_to_segcasts_code_reinstalls_none_of_its_dependencies() -> None:
    """Docker runs again every step after the first whose input changed: the code, copied before the
    installs, made each edit of server/, web/ or README.md download PyTorch and every dependency again."""
    steps = instructions()
    installs = pip_install_steps()
    torch_step = next(index for index, words in installs if "torch" in words)
    dependencies_step = next((index for index, words in installs if "-r" in words), None)
    assert dependencies_step is not None, "the dependencies are installed with segcast, after its code is copied"
    copy_server = steps.index(("COPY", "server ./server"))
    assert torch_step < dependencies_step < copy_server
    copied_before = [arguments for kind, arguments in steps[:dependencies_step] if kind == "COPY"]
    assert copied_before == ["pyproject.toml ./"], "only what the dependencies are read from"
    assert not [arguments for kind, arguments in steps[:torch_step] if kind == "COPY"]


def test_the_image_can_export_and_infer_on_triton() -> None:
    """deploy/ runs `segcast export --format triton` and `--model grpc://...` with this image."""
    assert {"onnx", "triton"} <= image_extras()


def test_the_image_can_publish_to_mqtt() -> None:
    """``[events.mqtt]`` needs the mqtt extra, which a user of the image has no way to add."""
    assert "mqtt" in image_extras()


def test_the_image_can_serve_an_openvino_export() -> None:
    """OpenVINO is the fastest way to infer on a CPU, the image's kind, and its user cannot add it."""
    assert "openvino" in image_extras()


def test_the_gpu_build_is_one_build_argument_away() -> None:
    assert build_args() == {"TORCH_INDEX_URL": CPU_INDEX}
    assert "--build-arg TORCH_INDEX_URL=" in DOCKERFILE.read_text()


def test_downloaded_models_are_kept_in_the_models_volume() -> None:
    env = " ".join(arguments for kind, arguments in instructions() if kind == "ENV")
    volumes = [arguments for kind, arguments in instructions() if kind == "VOLUME"]
    assert "XDG_CACHE_HOME=/models" in env.split() and volumes == ["/models"]


def test_glibc_keeps_two_malloc_arenas_in_the_image() -> None:
    """An arena per thread kept what closed WebRTC peers freed: RSS grew with each player session,
    half as fast with two (the rest `server.webrtc.memory` trims)."""
    env = " ".join(arguments for kind, arguments in instructions() if kind == "ENV")
    assert "MALLOC_ARENA_MAX=2" in env.split()


def test_segcast_runs_as_a_user_of_its_own_who_owns_the_models_volume() -> None:
    """FFmpeg parses whatever a camera or the API sends: a flaw there should not be root's."""
    steps = instructions()
    users = [arguments for kind, arguments in steps if kind == "USER"]
    assert len(users) == 1
    # By number: Kubernetes' runAsNonRoot refuses to start an image whose user is a name.
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) != 0, users
    run = next(arguments for kind, arguments in steps if kind == "RUN" and "useradd" in arguments)
    assert f"--uid {uid}" in run, "the user set is the one created, who owns the volumes"
    assert not gid or f"--gid {gid}" in run
    owned = shlex.split(run.partition("chown segcast:segcast")[2])
    # Compose's one-shot export writes the Triton repository into a named volume: Docker makes a folder
    # the image lacks root's, and the export would fail there.
    compose = yaml.safe_load(COMPOSE.read_text())
    export = compose["services"]["export"]["command"]
    assert "/models" in owned and export[export.index("--out") + 1] in owned
    # The user is set after every install (pip needs root) and before the volume and the entry point.
    kinds = [kind for kind, _ in steps]
    assert kinds.index("USER") > max(i for i, (kind, a) in enumerate(steps) if kind == "RUN" and "pip install" in a)
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its command (exec form)."""
    found = [arguments for kind, arguments in instructions() if kind == "HEALTHCHECK"]
    assert len(found) == 1, "the Dockerfile has no HEALTHCHECK: docker run never shows the container unhealthy"
    [arguments] = found
    options, _, command = arguments.partition("CMD ")
    return dict(option.lstrip("-").split("=", 1) for option in options.split()), json.loads(command)


@contextmanager
def health_server(status: int) -> Iterator[int]:
    """A server on 127.0.0.1 answering ``/healthz`` with ``status``; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler, "health-server") as server:
        yield server.server_address[1]


def test_the_image_checks_its_own_health_as_compose_does() -> None:
    """``docker run`` shows healthy or unhealthy, with no curl in the slim image: Compose's own check."""
    options, command = healthcheck()
    compose = yaml.safe_load(COMPOSE.read_text())
    assert ["CMD", *command] == compose["x-node"]["healthcheck"]["test"]
    assert options["start-period"] == compose["x-node"]["healthcheck"]["start_period"], "PyTorch imports slowly"
    [port] = [arguments for kind, arguments in instructions() if kind == "EXPOSE"]
    python, flag, code = command
    assert (python, flag) == ("python", "-c")
    address = f"http://127.0.0.1:{port}/healthz"
    assert code.count(address) == 1, code
    for status, healthy in ((200, True), (503, False)):
        with health_server(status) as served:
            here = code.replace(address, f"http://127.0.0.1:{served}/healthz")
            result = subprocess.run([sys.executable, "-c", here], capture_output=True, timeout=HEALTHCHECK_RUN_S)
        assert (result.returncode == 0) == healthy, (status, result.stderr)


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) for each .dockerignore line, as Docker reads them: ``*`` and ``?`` stop at
    ``/``, ``**`` crosses folders, ``!`` includes again, and the last pattern that matches wins."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        parts = re.split(r"(\*\*/|\*\*|\*|\?)", line.lstrip("!").strip("/"))
        wildcards = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        patterns.append((excludes, re.compile("".join(wildcards.get(p, re.escape(p)) for p in parts))))
    return patterns


def sent_to_the_build(path: str) -> bool:
    """Whether ``path`` (relative to the checkout) is in the build context: a pattern matching one of
    its folders matches it too."""
    folders = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    sent = True
    for excludes, pattern in ignore_patterns():
        if any(pattern.fullmatch(folder) for folder in folders):
            sent = not excludes
    return sent


def test_ignore_patterns_read_as_docker_reads_them() -> None:
    assert not sent_to_the_build(".git/config") and sent_to_the_build("server/app.py")
    assert not sent_to_the_build("server/http/__pycache__/app.cpython-311.pyc")


def test_the_build_is_sent_what_it_copies_and_no_secret_or_build_output() -> None:
    root = DOCKERFILE.parent
    copied = [arguments.split()[:-1] for kind, arguments in instructions() if kind == "COPY"]
    for source in (name for names in copied for name in names):
        files = (
            [source]
            if (root / source).is_file()
            else [
                str(f.relative_to(root))
                for f in (root / source).rglob("*")
                if f.is_file() and "__pycache__" not in f.parts
            ]
        )
        assert files and all(sent_to_the_build(f) for f in files), f"COPY {source} needs it in the context"
    left_out = [
        "deploy/.env",  # the admin token, where the Compose steps put it
        ".env",
        "cams.toml",  # a config with tokens, where `segcast split` is run in the checkout
        ".venv/bin/python",
        "build/lib/server/app.py",
        "dist/segcast-0.2.0-py3-none-any.whl",
        "segcast.egg-info/PKG-INFO",
        ".hypothesis/examples/0/1",
        ".whl/torch-2.5.0-cp311-none-linux_x86_64.whl",
        ".git/config",
        "tests/test_docker.py",
        "server/__pycache__/app.cpython-311.pyc",
    ]
    assert [path for path in left_out if sent_to_the_build(path)] == []
