# syntax=docker/dockerfile:1
#
# Image of the subscription order management workers.
#
#   docker build -t som:local .
#   docker run --rm som:local                      # som --help
#   docker run --rm -e SOM_KAFKA_BOOTSTRAP=... -e SOM_DATABASE_URL=... som:local som worker intake
#
# One image for every role: `som worker intake|lifecycle|billing|entitlements`, `som migrate`,
# `som topics`, and the operator commands (`som dlq list`, `som orders send`, ...).
# Health, readiness and Prometheus metrics are served on SOM_HEALTH_PORT (8080 here).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# build: a virtualenv in /opt/venv with the project and its dependencies (all binary wheels).
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, read from pyproject.toml, so that a change to the code alone reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The project itself (`pip install .`; its dependencies are already satisfied above).
COPY . .
RUN pip install . \
    && som --help > /dev/null

# ---------------------------------------------------------------------------------------------
# runtime: the virtualenv on a clean slim image, run as an unprivileged user.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="subscription-order-management" \
      org.opencontainers.image.description="Subscription order management Kafka workers: intake, lifecycle, billing, entitlements"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOM_HEALTH_PORT=8080

RUN groupadd --system --gid 10001 som \
    && useradd --system --uid 10001 --gid som --home-dir /app --no-create-home --shell /usr/sbin/nologin som \
    && mkdir -p /app \
    && chown som:som /app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# /livez, /readyz and /metrics of `som worker NAME`.
EXPOSE 8080

# Liveness of a running worker; python's urllib, so the image needs no curl.
# (Meaningless for the one-shot commands: compose disables it for `init`.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('SOM_HEALTH_PORT', '8080'), timeout=4)"]

CMD ["som", "--help"]
