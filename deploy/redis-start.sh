#!/bin/sh
# Entrypoint of coderl-redis (deploy/redis.Dockerfile): redis-server with coderl.conf, plus a
# password read at container start, never baked into the image:
#   CODERL_REDIS_PASSWORD_FILE  a file holding it (a Docker secret, /run/secrets/...), or
#   CODERL_REDIS_PASSWORD       the password itself (from an env file)
# `requirepass` reaches redis-server on stdin, not on its command line (where `ps` shows it).
# CODERL_REDIS_BIND is the host interface compose publishes Redis on: anything but loopback
# without a password is refused (exit 64), so Redis is never open to a network by mistake.
set -eu
password=""
if [ -n "${CODERL_REDIS_PASSWORD_FILE:-}" ]; then
	if [ ! -r "$CODERL_REDIS_PASSWORD_FILE" ]; then
		echo "coderl-redis: cannot read CODERL_REDIS_PASSWORD_FILE=$CODERL_REDIS_PASSWORD_FILE" >&2
		exit 64
	fi
	password=$(cat "$CODERL_REDIS_PASSWORD_FILE")
elif [ -n "${CODERL_REDIS_PASSWORD:-}" ]; then
	password=$CODERL_REDIS_PASSWORD
fi
unset CODERL_REDIS_PASSWORD
case "${CODERL_REDIS_BIND:-127.0.0.1}" in
127.* | localhost | ::1 | "[::1]") ;;
*)
	if [ -z "$password" ]; then
		echo "coderl-redis: refusing to publish Redis on $CODERL_REDIS_BIND without a password:" \
			"set CODERL_REDIS_PASSWORD (or CODERL_REDIS_PASSWORD_FILE), or CODERL_REDIS_BIND=127.0.0.1" >&2
		exit 64
	fi
	;;
esac
if [ -z "$password" ]; then
	exec redis-server /etc/redis/coderl.conf "$@"
fi
case "$password" in
*"
"*)
	echo "coderl-redis: the password must be a single line" >&2
	exit 64
	;;
esac
# Redis's config syntax: inside double quotes, backslash and double quote are escaped.
escaped=$(printf '%s' "$password" | sed 's/[\\"]/\\&/g')
# A here-document, not a pipe: exec keeps redis-server as PID 1, so `docker stop` reaches it.
exec redis-server /etc/redis/coderl.conf "$@" - <<CONF
requirepass "$escaped"
CONF
