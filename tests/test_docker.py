"""The Dockerfile, read rather than built (no Docker daemon runs where the tests run).

What is checked is what decides the image's size and whether its downloads persist: PyTorch comes from
the CPU-only wheel index (the default CUDA build is several GB for a CPU server) and is installed before
segcast so that segcast's install keeps it, and downloaded models land in the /models volume.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"
COMPOSE = DOCKERFILE.parent / "deploy" / "compose.yaml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.MULTILINE)]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in instructions() if kind == "ARG" and "=" in arg)


def pip_installs() -> list[list[str]]:
    """Each ``pip install`` command of the RUN steps, in order, with build arguments filled in."""
    commands = []
    for kind, arguments in instructions():
        if kind != "RUN":
            continue
        for key, value in build_args().items():
            arguments = arguments.replace(f'"${key}"', value).replace(f"${key}", value)
        for command in arguments.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                commands.append(words[2:])
    return commands


def test_pytorch_comes_from_the_cpu_wheels_before_segcast_is_installed() -> None:
    installs = pip_installs()
    torch_step = next(i for i, words in enumerate(installs) if "torch" in words)
    segcast_step = next(i for i, words in enumerate(installs) if any(w == "." or w.startswith(".[") for w in words))
    assert torch_step < segcast_step, "segcast's install must find PyTorch already there, or it pulls CUDA"
    words = installs[torch_step]
    assert words[words.index("--index-url") + 1] == CPU_INDEX
    assert "torchvision" in words, "ultralytics needs torchvision, from the same index"
    assert "--extra-index-url" not in " ".join(installs[segcast_step]), "no second source of PyTorch"


def image_extras() -> set[str]:
    [segcast] = [words for words in pip_installs() if any(w.startswith(".[") for w in words)]
    return set(next(w for w in segcast if w.startswith(".["))[2:-1].split(","))


def test_the_image_can_export_and_infer_on_triton() -> None:
    """deploy/ runs `segcast export --format triton` and `--model grpc://...` with this image."""
    assert {"onnx", "triton"} <= image_extras()


def test_the_image_can_publish_to_mqtt() -> None:
    """``[events.mqtt]`` needs the mqtt extra, which a user of the image has no way to add."""
    assert "mqtt" in image_extras()


def test_the_gpu_build_is_one_build_argument_away() -> None:
    assert build_args() == {"TORCH_INDEX_URL": CPU_INDEX}
    assert "--build-arg TORCH_INDEX_URL=" in DOCKERFILE.read_text()


def test_downloaded_models_are_kept_in_the_models_volume() -> None:
    env = " ".join(arguments for kind, arguments in instructions() if kind == "ENV")
    volumes = [arguments for kind, arguments in instructions() if kind == "VOLUME"]
    assert "XDG_CACHE_HOME=/models" in env.split() and volumes == ["/models"]


def test_segcast_runs_as_a_user_of_its_own_who_owns_the_models_volume() -> None:
    """FFmpeg parses whatever a camera or the API sends: a flaw there should not be root's."""
    steps = instructions()
    users = [arguments for kind, arguments in steps if kind == "USER"]
    assert users == ["segcast"]
    run = next(arguments for kind, arguments in steps if kind == "RUN" and "useradd" in arguments)
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
