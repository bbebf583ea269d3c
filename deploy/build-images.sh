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
# builds an equivalent from Debian packages (debootstrap) and tags it debian:bookworm-slim. A
# stand-in from an older checkout (lacking packages the images now need) is rebuilt automatically.
#
# The executor image installs Python wheels staged in build/wheels/ (no index inside the build):
#   build/wheels/deps/     third-party wheels for CPython 3.11 manylinux x86_64, fetched once with
#                          `pip download` from the host's configured index (skipped while they
#                          match EXECUTOR_REQUIREMENTS below); CODERL_WHEELS_DIR=DIR takes them
#                          from a local wheelhouse instead (air-gapped sites: `pip download` the
#                          same list on a connected machine and bring the folder)
#   build/wheels/project/  a wheel of this checkout (`pip wheel --no-deps .`), rebuilt every run
set -euo pipefail

# One line per image: "TAG DOCKERFILE" (the build context is always the repo root).
IMAGES=(
	"coderl-sandbox:latest deploy/sandbox.Dockerfile"
	"coderl-executor:latest deploy/executor.Dockerfile"
	"coderl-redis:latest deploy/redis.Dockerfile"
)
BASE_IMAGE=debian:bookworm-slim
PULL_TIMEOUT_S=${CODERL_PULL_TIMEOUT_S:-20}

# What the executor image runs on: the torch-free part of pyproject.toml's dependencies (keep the
# ranges in line with it). async-timeout: redis-py needs it on Python < 3.11.3 (Debian bookworm
# has 3.11.2), and pip evaluates that marker against the host's Python, not the target's.
EXECUTOR_REQUIREMENTS=(
	"pydantic>=2.6"
	"redis>=5.0"
	"async-timeout>=4.0.3"
	"docker>=7.0"
	"pyyaml>=6.0"
	"tqdm>=4.66"
	"numpy>=1.26"
)
WHEEL_TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp
	--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
WHEELS_DIR=build/wheels

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
		sed -n '2,20s/^# \{0,1\}//p' "$0"
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
		if [[ $(docker image inspect -f '{{index .Config.Labels "org.coderl.base"}}' "$BASE_IMAGE") == debootstrap ]]; then
			# Our stand-in: rebuilt only if it lacks packages the images now need, else a no-op.
			"$REPO_ROOT/deploy/build-base-image.sh" --stand-in
		else
			log "base image $BASE_IMAGE present locally (the Dockerfiles apt-get what it lacks)"
		fi
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

# Third-party wheels for the executor image, fetched (or copied from CODERL_WHEELS_DIR) only when
# the staged set does not match the wanted one; then a wheel of this checkout, every time.
stage_wheels() {
	local deps=$WHEELS_DIR/deps project=$WHEELS_DIR/project source stamp t0=$SECONDS
	local pip=(python3 -m pip --disable-pip-version-check --no-input)
	python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip not found (needed to stage wheels)"
	if [[ -n ${CODERL_WHEELS_DIR:-} ]]; then
		[[ -d $CODERL_WHEELS_DIR ]] || die "CODERL_WHEELS_DIR=$CODERL_WHEELS_DIR is not a directory"
		source=$(cd "$CODERL_WHEELS_DIR" && pwd)
	else
		source=index
	fi
	stamp=$(printf '%s\n' "source=$source" "${WHEEL_TARGET[@]}" "${EXECUTOR_REQUIREMENTS[@]}")
	if [[ -f $deps/.stamp && $(<"$deps/.stamp") == "$stamp" ]] && compgen -G "$deps/*.whl" >/dev/null; then
		log "wheels: $(find "$deps" -name '*.whl' | wc -l) staged in $deps match; not fetching"
	else
		rm -rf "$deps"
		mkdir -p "$deps"
		local from=()
		if [[ $source == index ]]; then
			log "wheels: pip download ${EXECUTOR_REQUIREMENTS[*]} -> $deps"
		else
			log "wheels: from the wheelhouse $source (CODERL_WHEELS_DIR) -> $deps"
			from=(--no-index --find-links "$source")
		fi
		if ! "${pip[@]}" download -q "${from[@]}" "${WHEEL_TARGET[@]}" -d "$deps" "${EXECUTOR_REQUIREMENTS[@]}"; then
			rm -rf "$deps"
			die "could not stage the executor's wheels. Air-gapped? On a connected machine run
  python3 -m pip download -d WHEELHOUSE ${WHEEL_TARGET[*]} $(printf "'%s' " "${EXECUTOR_REQUIREMENTS[@]}")
then bring WHEELHOUSE here and rerun with CODERL_WHEELS_DIR=WHEELHOUSE"
		fi
		printf '%s\n' "$stamp" >"$deps/.stamp"
		log "wheels: $(find "$deps" -name '*.whl' | wc -l) staged in $((SECONDS - t0))s ($(du -sh "$deps" | cut -f1))"
	fi

	# The project itself: setuptools from the host when it is recent enough (no index needed).
	local isolation=()
	if python3 -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 68)' 2>/dev/null; then
		isolation=(--no-build-isolation)
	fi
	rm -rf "$project" build/lib build/bdist.* # stale build/lib files would end up in the wheel
	# A fixed zip timestamp makes the wheel byte-identical while the code is, so docker build's
	# layer cache (keyed on file content) skips reinstalling it.
	SOURCE_DATE_EPOCH=315532800 "${pip[@]}" wheel -q --no-deps "${isolation[@]}" -w "$project" . >/dev/null ||
		die "could not build the project's wheel (pip wheel --no-deps .)"
	log "wheels: built $(basename "$(compgen -G "$project/*.whl")")"
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
stage_wheels
for spec in "${IMAGES[@]}"; do
	# shellcheck disable=SC2086  # "TAG DOCKERFILE" -> two arguments
	build_image $spec
done
log "all images built in ${SECONDS}s"
