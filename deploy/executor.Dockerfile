# Executor service worker (coderl-executor): reads execution requests from Redis streams, runs
# each program in a sandbox container (coderl-sandbox:latest) that it starts on the HOST's Docker
# engine through the mounted socket, and publishes the result back (executor/worker.py).
#
# Build from the repo root with deploy/build-images.sh: it stages the Python wheels this file
# installs (build/wheels/deps: third-party, build/wheels/project: this checkout), so the build
# needs no package index. By hand, once build/wheels exists:
#   docker build -f deploy/executor.Dockerfile -t coderl-executor:latest .
# Only the torch-free packages run here (coderl/, executor/); torch, ray and transformers are not
# installed (the project wheel goes in with --no-deps).
ARG BASE_IMAGE=debian:bookworm-slim

# --- build stage: a virtualenv filled from the staged wheels, offline -------------------------
FROM ${BASE_IMAGE} AS build

# python3 + pip + venv from Debian, only when the base lacks them (the offline stand-in has them).
RUN if dpkg -s python3 python3-pip python3-venv >/dev/null 2>&1; then \
        echo "python3 + pip + venv already in the base image: skipping apt"; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-pip python3-venv \
        && apt-get clean \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi

# The venv does not see Debian's site-packages (its python3-numpy is older than the project's
# floor) and gets no pip of its own: the system pip installs into it.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv --without-pip /opt/coderl/venv

# Third-party wheels first (a layer that survives code changes), every file explicitly.
COPY build/wheels/deps/ /tmp/wheels/deps/
RUN set -e; \
    ls /tmp/wheels/deps/*.whl >/dev/null 2>&1 \
        || { echo "build/wheels/deps has no wheels: run deploy/build-images.sh" >&2; exit 1; }; \
    python3 -m pip --python /opt/coderl/venv/bin/python install --no-index --no-deps /tmp/wheels/deps/*.whl

COPY build/wheels/project/ /tmp/wheels/project/
RUN set -e; \
    ls /tmp/wheels/project/coderl-*.whl >/dev/null 2>&1 \
        || { echo "build/wheels/project has no coderl wheel: run deploy/build-images.sh" >&2; exit 1; }; \
    python3 -m pip --python /opt/coderl/venv/bin/python install --no-index --no-deps /tmp/wheels/project/coderl-*.whl \
    && /opt/coderl/venv/bin/python -c "import coderl.streams, executor.worker, executor.health, numpy, yaml, tqdm; print('executor imports ok')" \
    && if /opt/coderl/venv/bin/python -c "import torch" >/dev/null 2>&1; then echo "torch must not be in the executor image" >&2; exit 1; fi

# --- runtime stage: the base + the venv, no wheels, no pip in the venv -------------------------
FROM ${BASE_IMAGE}

LABEL org.coderl.role=executor

# The venv's interpreter is the base's /usr/bin/python3: install it only if missing.
RUN if dpkg -s python3 >/dev/null 2>&1; then \
        echo "python3 already in the base image: skipping apt"; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
        && apt-get clean \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi

COPY --from=build /opt/coderl/venv /opt/coderl/venv

ENV PATH=/opt/coderl/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    CODERL_HEALTH_PORT=8080

RUN python3 -c "import sys; assert sys.prefix == '/opt/coderl/venv', sys.prefix" \
    && python3 -m executor --help >/dev/null

WORKDIR /opt/coderl
EXPOSE 8080
# Runs as root on purpose: the worker starts and removes sandbox containers through the host's
# Docker socket (/var/run/docker.sock, root:docker 0660 on the host), and the docker group's id
# differs from host to host. Holding that socket is equivalent to root on the host whatever the
# user here, so a non-root user would add no protection. Untrusted programs never run in this
# container: they run in the sandbox containers (no network, no socket, non-root, read-only).
USER 0:0

# /readyz: the worker loop turns, Redis answers, not shutting down (executor/health.py).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-m", "executor", "health", "--path", "/readyz"]

# SIGTERM: stop reading, let in-flight programs finish (drain_timeout_s, 60 s), hand the rest back.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python3", "-m", "executor"]
CMD []
