#!/usr/bin/env bash
# Build the project's Docker images; works offline / air-gapped.
#
# Usage: deploy/build-images.sh [--no-cache] [--offline]
#
#   --no-cache  pass --no-cache to docker build
#   --offline   don't try to pull the public base image (also: CODERL_OFFLINE=1)
#
# The Dockerfiles start FROM debian:bookworm-slim. If that image isn't present locally, one quick
# `docker pull` is tried; if the registry can't be reached, deploy/build-base-image.sh --stand-in
# builds an equivalent from Debian packages (debootstrap) and tags it debian:bookworm-slim.
set -euo pipefail

# One line per image: "TAG DOCKERFILE" (the build context is always the repo root).
IMAGES=(
	"coderl-sandbox:latest deploy/sandbox.Dockerfile"
)
BASE_IMAGE=debian:bookworm-slim
PULL_TIMEOUT_S=${CODERL_PULL_TIMEOUT_S:-20}

log() { printf '[build-images] %s\n' "$*"; }
die() {
	printf '[build-images] ERROR: %s\n' "$*" >&2
	exit 1
}

build_args=()
offline=${CODERL_OFFLINE:-0}
while (($#)); do
	case $1 in
	--no-cache) build_args+=(--no-cache) ;;
	--offline) offline=1 ;;
	-h | --help)
		sed -n '2,12s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "Docker engine unreachable (is dockerd running?)"

ensure_base_image() {
	if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
		log "base image $BASE_IMAGE present locally"
		return 0
	fi
	if [[ $offline != 1 ]]; then
		log "base image $BASE_IMAGE missing: trying docker pull (${PULL_TIMEOUT_S}s timeout)"
		if timeout "$PULL_TIMEOUT_S" docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
			log "pulled $BASE_IMAGE"
			return 0
		fi
		log "pull failed (no registry access?)"
	fi
	log "building an offline stand-in for $BASE_IMAGE from Debian packages"
	"$REPO_ROOT/deploy/build-base-image.sh" --stand-in
}

# Digest of the harness code baked into the sandbox image; the executor refuses an image whose
# label differs from its own checkout (same rule as executor/sandbox/image.py).
harness_digest() {
	find executor/harness -maxdepth 1 -name '*.py' -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum | cut -c1-16
}

build_image() {
	local tag=$1 dockerfile=$2 t0=$SECONDS
	local labels=(--label "org.coderl.harness=$(harness_digest)")
	log "docker build ${build_args[*]:+${build_args[*]} }-f $dockerfile -t $tag ."
	docker build "${build_args[@]}" "${labels[@]}" -f "$dockerfile" -t "$tag" .
	log "built $tag in $((SECONDS - t0))s ($(docker image inspect -f '{{.Size}}' "$tag" |
		numfmt --to=iec-i --suffix=B 2>/dev/null || true))"
}

ensure_base_image
for spec in "${IMAGES[@]}"; do
	# shellcheck disable=SC2086  # "TAG DOCKERFILE" -> two arguments
	build_image $spec
done
log "all images built in ${SECONDS}s"
