# Execution sandbox: runs untrusted, model-generated programs against unit tests.
# Build from the repo root (deploy/build-images.sh does this):
#   docker build -f deploy/sandbox.Dockerfile -t coderl-sandbox:latest .
# Offline / air-gapped: deploy/build-base-image.sh --stand-in provides a debian:bookworm-slim built
# from Debian packages that already has python3 + numpy, which makes the apt step below a no-op.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

LABEL org.coderl.role=sandbox

# python3 + numpy from Debian, only when the base image lacks them (the real debian:bookworm-slim).
RUN if python3 -c "import numpy" >/dev/null 2>&1; then \
        echo "python3 + numpy already in the base image: skipping apt"; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3-minimal python3-numpy \
        && apt-get clean \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi \
    && python3 -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"

# The harness is the only project code in the sandbox; root-owned and read-only for the sandbox user.
COPY executor/harness/ /opt/coderl/harness/
RUN python3 -m compileall -q /opt/coderl/harness \
    && chown -R 0:0 /opt/coderl \
    && chmod -R u=rwX,go=rX /opt/coderl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    LANG=C.UTF-8

WORKDIR /opt/coderl
USER 65534:65534
CMD ["python3", "-E", "-s", "-m", "harness.server"]
