# Spool: one container, nothing else to start. Build: docker build -t spool .
# Stage 1 builds the package into a virtualenv; stage 2 carries only that venv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPOOL_LOG__FORMAT=json \
    SPOOL_BROKER__SNAPSHOT_PATH=/data/snapshot.jsonl \
    SPOOL_BROKER__SQLITE_PATH=/data/spool.db
RUN groupadd --system --gid 10001 spool \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin spool \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config.toml ./
# The memory backend's snapshot and the sqlite journal live here: mount a volume.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
# SIGTERM starts the graceful stop; give `docker stop -t` graceful_timeout_s + 5 s.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service", "healthcheck"]
CMD ["python", "-m", "service"]
