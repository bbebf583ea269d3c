# Redis for the executor service (coderl-redis): the request/result streams, stored problems and
# worker heartbeats (coderl/streams.py). Persistence is on: an append-only file fsynced every
# second (at most ~1 s of acknowledged writes lost on a crash) plus RDB snapshots, both in the
# /data volume. Build from the repo root with deploy/build-images.sh (offline), or:
#   docker build -f deploy/redis.Dockerfile -t coderl-redis:latest .
# Extra arguments are passed to redis-server, e.g. `docker run coderl-redis:latest --requirepass S`.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

LABEL org.coderl.role=redis

# redis-server from Debian, only when the base lacks it (the offline stand-in has it).
RUN if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then \
        echo "redis-server already in the base image: skipping apt"; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
        && apt-get clean \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi \
    && redis-server --version

# No password and protected mode off: the server is reachable only on the compose network and,
# from the host, on 127.0.0.1 (docker-compose.yml). Expose it further only with --requirepass.
RUN mkdir -p /data \
    && chown redis:redis /data \
    && chmod 0750 /data \
    && printf '%s\n' \
        '# coderl-redis (deploy/redis.Dockerfile)' \
        'bind * -::*' \
        'protected-mode no' \
        'port 6379' \
        'daemonize no' \
        'supervised no' \
        'loglevel notice' \
        'logfile ""' \
        'dir /data' \
        'appendonly yes' \
        'appendfsync everysec' \
        'aof-use-rdb-preamble yes' \
        'dbfilename dump.rdb' \
        'save 3600 1 300 100 60 10000' \
        > /etc/redis/coderl.conf \
    && chmod 0644 /etc/redis/coderl.conf

VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379

HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["sh", "-c", "[ \"$(redis-cli -p 6379 ping)\" = PONG ]"]

ENTRYPOINT ["redis-server", "/etc/redis/coderl.conf"]
CMD []
