# segcast in a container: `docker build -t segcast .` then
#   docker run -p 8080:8080 -e SEGCAST_ADMIN_TOKENS=<a long secret> -v segcast-models:/models segcast
# serves a generated scene with the bundled model. It listens on 0.0.0.0 (the only way through -p),
# so it refuses to start without a token. For cameras, name them and a model:
#   docker run -p 8080:8080 -e SEGCAST_ADMIN_TOKENS=... -v segcast-models:/models segcast \
#       serve --host 0.0.0.0 --source front=rtsp://user:pass@camera/stream
# Models given by name (the default yolov8n-seg.pt) are downloaded once into the /models volume.
#
# The image runs on CPUs and so installs PyTorch's CPU-only wheels (about 200 MB, where the default
# CUDA build is several GB). For NVIDIA GPUs build with the CUDA wheels (PyPI's own, or one of
# PyTorch's CUDA indexes such as https://download.pytorch.org/whl/cu128) and run with --gpus:
#   docker build -t segcast:gpu --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#   docker run --gpus all ... segcast:gpu serve ...   (and device = "cuda:0" in the config's [model])
# WebRTC video goes over UDP between the browser and the container, which -p does not forward: use
# --network host (Linux), or give SEGCAST_ICE_SERVERS a TURN server both can reach (see README).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# MALLOC_ARENA_MAX: glibc's arena per thread kept what closed WebRTC peers freed, and RSS grew with
# each player session; with 2 it grows half as fast (segcast also trims after closes: server/webrtc/memory.py).
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDG_CACHE_HOME=/models \
    YOLO_CONFIG_DIR=/models/.ultralytics \
    SEGCAST_IMAGE=1 \
    MALLOC_ARENA_MAX=2

WORKDIR /src
# Heaviest and slowest-changing first, each a layer of its own, so that a change to segcast's code
# (or README) rebuilds only the last, small one. PyTorch first, from the index chosen above; the
# dependencies' install then finds it already there.
RUN pip install --index-url "$TORCH_INDEX_URL" torch torchvision
# segcast's dependencies and those of its extras, read from pyproject.toml alone (tomllib), as
# `pip install '.[extras]'` would install them. The extras, which a container's user could not add
# afterwards (SEGCAST_IMAGE above makes segcast say so, naming this line, where a missing one is
# needed): onnx for `segcast export` (deploy/ exports the Triton model repository with this image),
# openvino for the fastest CPU inference (a model exported with `segcast export --format openvino`;
# README, Performance), triton for nodes that infer on a Triton server (--model grpc://...), mqtt for
# [events.mqtt] (Home Assistant).
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = sys.argv[1].removeprefix('.[').removesuffix(']').split(','); \
print(*project['dependencies'], *(r for e in extras for r in project['optional-dependencies'][e]), sep='\n')" \
        '.[onnx,openvino,triton,mqtt]' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# segcast itself: everything it needs is there already.
COPY README.md LICENSE ./
COPY server ./server
COPY web ./web
RUN pip install --no-deps . \
    && rm -rf /src
# Not root: segcast opens what cameras and the API send it (FFmpeg parses every byte), and needs no
# privilege for it. It writes only in /models (downloads, an event history put there), a config folder
# mounted for it to save API changes in, and /repository (where deploy/compose.yaml exports the Triton
# model repository); a named volume takes its folder's owner from the image the first time it is
# mounted, where a folder the image lacks would be root's.
# USER by number: Kubernetes' runAsNonRoot cannot tell that a user named by name is not root, and
# refuses to start the container.
RUN groupadd --system --gid 10001 segcast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /models --no-create-home segcast \
    && mkdir -p /models /repository \
    && chown segcast:segcast /models /repository
USER 10001:10001

WORKDIR /models
VOLUME /models
EXPOSE 8080
# The check Compose's nodes use: python, as curl is not in the slim image; /healthz needs no token.
# It asks port 8080 over HTTP: a container serving another port, or HTTPS, needs --health-cmd to match.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["segcast"]
CMD ["serve", "--host", "0.0.0.0", "--source", "scene:?seed=1", "--model", "bundled"]
