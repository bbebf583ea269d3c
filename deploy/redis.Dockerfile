# Redis for the executor service (coderl-redis): the request/result streams, stored problems and
# worker heartbeats (coderl/streams.py). Persistence is on: an append-only file fsynced every
# second (at most ~1 s of acknowledged writes lost on a crash) plus RDB snapshots, both in the
# /data volume. Build from the repo root with deploy/build-images.sh (offline), or:
#   docker build -f deploy/redis.Dockerfile -t coderl-redis:latest .
# Extra arguments are passed to redis-server. A password comes from CODERL_REDIS_PASSWORD_FILE (a
# mounted secret) or CODERL_REDIS_PASSWORD at start (deploy/redis-start.sh), never --requirepass.
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

# Protected mode off: without a password the server is reachable only on the compose network and,
# from the host, on 127.0.0.1 (docker-compose.yml). A password is set at container start by
# deploy/redis-start.sh (from a Docker secret or the environment), never stored in the image.
COPY deploy/redis-start.sh /usr/local/bin/coderl-redis-start
RUN chmod 0755 /usr/local/bin/coderl-redis-start \
    && mkdir -p /data \
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

# PONG, or NOAUTH with a password set: either way the server answers (no password in the probe).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["sh", "-c", "redis-cli -p 6379 ping 2>&1 | grep -qE '^(PONG|NOAUTH)'"]

ENTRYPOINT ["/usr/local/bin/coderl-redis-start"]
CMD []
