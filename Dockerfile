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

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDG_CACHE_HOME=/models \
    YOLO_CONFIG_DIR=/models/.ultralytics

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY server ./server
COPY web ./web
# PyTorch first, from the index chosen above; segcast's own install then finds it already there.
# The extras: onnx for `segcast export` (deploy/ exports the Triton model repository with this image),
# triton for nodes that infer on a Triton server (--model grpc://...), mqtt for [events.mqtt] (Home
# Assistant), which a container's user could not add afterwards.
RUN pip install --index-url "$TORCH_INDEX_URL" torch torchvision \
    && pip install '.[onnx,triton,mqtt]' \
    && rm -rf /src
# Not root: segcast opens what cameras and the API send it (FFmpeg parses every byte), and needs no
# privilege for it. It writes only in /models (downloads, the event history) and /repository (where
# deploy/compose.yaml exports the Triton model repository); a named volume takes its folder's owner
# from the image the first time it is mounted, where a folder the image lacks would be root's.
RUN useradd --system --uid 10001 --home-dir /models --no-create-home segcast \
    && mkdir -p /models /repository \
    && chown segcast:segcast /models /repository
USER segcast

WORKDIR /models
VOLUME /models
EXPOSE 8080
ENTRYPOINT ["segcast"]
CMD ["serve", "--host", "0.0.0.0", "--source", "scene:?seed=1", "--model", "bundled"]
