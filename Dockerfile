# syntax=docker/dockerfile:1
# Channelkit: one image for every role of `runtime serve` (HTTP API, gRPC, workers).
#   all in one:   docker run channelkit
#   API only:     docker run -e ENABLE_WORKERS=false channelkit
#   worker only:  docker run -e ENABLE_API=false -e ENABLE_GRPC=false -e WORKER_CHANNELS=email channelkit
# Settings are runtime/serve/settings.py's environment variables; `docker run channelkit serve --help` lists them.

# ---- builder: the framework's wheel and the reference app's dependencies in /opt/venv ----
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src

# Dependencies first, in their own layer: they change when pyproject.toml does, not with every
# edit to the code. The base dependencies run a generated app; the `notifications` extra adds
# what the reference handlers use. No `generate` extra: the image serves what was generated.
# Every dependency ships a wheel for CPython 3.11 on linux x86_64, so the slim image needs no
# compiler.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['notifications']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# Then the framework itself: every package that [tool.setuptools.packages.find] includes. The
# reference app (generated/, notifications/) is not in the wheel; the runtime stage copies it.
COPY generator/ generator/
COPY runtime/ runtime/
RUN pip install --no-cache-dir --no-deps . \
    && pip check

# ---- runtime: the venv, the project's files, a non-root user ----
FROM python:3.11-slim AS runtime

# A fixed uid/gid, numeric in USER below, so `runAsNonRoot` and volume ownership can rely on it.
# /app/.channelkit is the one writable place: the embedded Redis's data when REDIS_URL is unset.
RUN groupadd --system --gid 10001 channelkit \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin channelkit \
    && mkdir -p /app/.channelkit \
    && chown 10001:10001 /app/.channelkit

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    VIRTUAL_ENV=/opt/venv \
    HTTP_HOST=0.0.0.0 \
    GRPC_HOST=0.0.0.0 \
    LOG_FORMAT=json \
    PYTHONUNBUFFERED=1

# The project folder: `runtime serve` imports the generated package and the handlers from the
# current directory (the wheel in the venv is the framework only), so an image built FROM this
# one can replace them. channels.yaml and schema/ are what generated/ was generated from: with
# `pip install 'channelkit[generate]'` an image built FROM this one can regenerate or check it.
WORKDIR /app
COPY channels.yaml ./
COPY schema/ schema/
COPY generated/ generated/
COPY notifications/ notifications/
# Compiled now, as root: the runtime user cannot write __pycache__ here.
RUN python -m compileall -q generated notifications

USER 10001:10001

EXPOSE 8000 50051

# Ready = Redis reachable and every enabled component up (503 otherwise). A worker-only
# container (ENABLE_API=false) serves no HTTP to probe and reports healthy while running.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; os.environ.get('ENABLE_API', 'true').strip().lower() in ('0', 'false', 'no', 'off') or r.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('HTTP_PORT', '8000'), timeout=4)"]

# The first SIGTERM stops intake and gives running jobs SHUTDOWN_TIMEOUT (30 s) to finish:
# give the container longer than that (docker stop -t 40, compose stop_grace_period: 40s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "runtime"]
CMD ["serve"]
