# segcast in a container: `docker build -t segcast .` then
#   docker run -p 8080:8080 -e SEGCAST_ADMIN_TOKENS=<a long secret> -v segcast-models:/models segcast
# serves a generated scene with the bundled model. It listens on 0.0.0.0 (the only way through -p),
# so it refuses to start without a token. For cameras, name them and a model:
#   docker run -p 8080:8080 -e SEGCAST_ADMIN_TOKENS=... -v segcast-models:/models segcast \
#       serve --host 0.0.0.0 --source front=rtsp://user:pass@camera/stream
# Models given by name (the default yolov8n-seg.pt) are downloaded once into the /models volume.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    YOLO_CONFIG_DIR=/models/.ultralytics

WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY web ./web
RUN pip install . && rm -rf /src

WORKDIR /models
VOLUME /models
EXPOSE 8080
ENTRYPOINT ["segcast"]
CMD ["serve", "--host", "0.0.0.0", "--source", "scene:?seed=1", "--model", "bundled"]
