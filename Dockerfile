# session-buddy as a service: streamable HTTP MCP (`session-buddy serve --http`), standard
# mode, PostgreSQL storage when configured (see compose.yaml and docs/deployment.md).
# The ONNX model (all-MiniLM-L6-v2, int8) comes with the package's dependencies: nothing
# is downloaded when the container runs.

FROM python:3.13-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY settings ./settings
COPY session_buddy ./session_buddy
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.13-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/session_buddy-*.whl)[telemetry]" && rm -rf /wheels \
    && useradd --create-home --uid 10001 buddy \
    && mkdir -p /data && chown buddy:buddy /data
USER buddy
# Inside the container the service listens on every interface (publish the port on the
# host's loopback, or behind a proxy); a non-loopback bind needs allow_remote and auth.
ENV SESSION_BUDDY_MODE=standard \
    SESSION_BUDDY_DATA_DIR=/data \
    SESSION_BUDDY_SERVER__HOST=0.0.0.0 \
    SESSION_BUDDY_SERVER__PORT=8678 \
    SESSION_BUDDY_SERVER__ALLOW_REMOTE=true \
    SESSION_BUDDY_SERVER__AUTH=true \
    SESSION_BUDDY_LOG_LEVEL=INFO
VOLUME ["/data"]
EXPOSE 8678
# /metrics answers without a token and reads the store: healthy when it says session_buddy_up 1
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; b=u.urlopen('http://127.0.0.1:8678/metrics', timeout=4).read(); assert b'session_buddy_up 1.0' in b"]
CMD ["session-buddy", "serve", "--http"]
