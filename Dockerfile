# maas-gateway container image.
#
#   docker build -t maas-gateway .
#   docker run -p 8080:8080 -e DATABASE_URL=... -e LITELLM_URL=... maas-gateway
#   docker run ... maas-gateway serve --config /etc/maas-gateway/config.yaml
#   docker run ... maas-gateway migrate
#
# Two stages: `build` installs the package into a virtualenv; the final stage copies only
# that virtualenv onto a fresh slim base, so no compiler, pip or build cache ships.
# Every dependency has a manylinux wheel for CPython 3.11, so the build stage needs no
# compiler either.
#
# Runs as a non-root numeric user (so Kubernetes can verify runAsNonRoot) and under any
# arbitrary UID in group 0 (OpenShift's restricted SCC): nothing depends on the UID, the
# only writable places are /tmp and the group-0-writable working directory, HOME is /tmp.
# The root filesystem may be read-only (mount a volume on /tmp): no .pyc is written at run
# time and the metrics directory for several workers is created under /tmp.
#
# Workers: GATEWAY_WORKERS (environment) overrides server.workers in config.yaml.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies ./policies

# A virtualenv without pip: the base image's pip installs into it from outside.
RUN python -m venv --without-pip /opt/maas-gateway \
    && pip --python /opt/maas-gateway/bin/python install .

FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="maas-gateway" \
      org.opencontainers.image.description="Enforcing reverse proxy in front of LiteLLM: API keys, subscriptions and model access checked on every request."

ENV PATH=/opt/maas-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GATEWAY_HOST=0.0.0.0

COPY --from=build /opt/maas-gateway /opt/maas-gateway

# UID 1001, primary group 0: OpenShift replaces the UID but keeps group 0, so whatever
# the image lets group 0 do, any UID can do. /etc/maas-gateway is where config.yaml is
# mounted (a ConfigMap in Kubernetes); the image runs without one (embedded defaults).
RUN useradd --uid 1001 --gid 0 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin maas \
    && mkdir -p /etc/maas-gateway /var/lib/maas-gateway \
    && chown -R 1001:0 /var/lib/maas-gateway \
    && chmod -R g=u /var/lib/maas-gateway

WORKDIR /var/lib/maas-gateway
USER 1001
EXPOSE 8080

# No curl in a slim image: the standard library checks /health/live.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/health/live', timeout=4)"]

ENTRYPOINT ["/opt/maas-gateway/bin/maas-gateway"]
CMD ["serve"]
