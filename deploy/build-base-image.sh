#!/usr/bin/env bash
# Build a minimal Debian bookworm base image from Debian packages only (debootstrap + docker
# import): no container registry is needed, so this works on air-gapped clusters that can reach a
# Debian mirror (or a local/file:// mirror). It carries what every project image needs: python3 +
# numpy (sandbox), pip + venv (executor: installs the wheels staged by build-images.sh) and
# redis-server (coderl-redis), so their Dockerfiles need no mirror on top of it.
#
# Usage: deploy/build-base-image.sh [--stand-in] [--force] [--image NAME:TAG] [--mirror URL] [--verbose]
#
#   --image NAME:TAG  image to create (default: coderl/bookworm-python:latest)
#   --mirror URL      Debian mirror (default: $DEBIAN_MIRROR, else the host's apt sources,
#                     else debootstrap's own default)
#   --stand-in        also tag the image as debian:bookworm-slim, the public base image the
#                     project's Dockerfiles name, so they build offline unchanged
#   --force           rebuild even if the image already exists (and replace a foreign
#                     debian:bookworm-slim tag when --stand-in is given)
#   --verbose         stream debootstrap's output instead of only its tail on failure
#
# Without --force an existing image is still rebuilt when its org.coderl.base-packages label lacks
# one of the packages this script installs (a stand-in from an older checkout, e.g. without pip).
# Needs root, debootstrap and a running Docker engine.
set -euo pipefail

SUITE=bookworm
# Keep in sync with the "only if missing" apt steps of deploy/*.Dockerfile.
PACKAGES=python3-minimal,python3-numpy,python3-pip,python3-venv,redis-server
STAND_IN_TAG=debian:bookworm-slim
BASE_LABEL=org.coderl.base=debootstrap
PACKAGES_LABEL=org.coderl.base-packages
IMAGE=coderl/bookworm-python:latest
MIRROR=${DEBIAN_MIRROR:-}
MIRROR_FROM=\$DEBIAN_MIRROR
STAND_IN=0
FORCE=0
VERBOSE=0

log() { printf '[build-base-image] %s\n' "$*"; }
die() {
	printf '[build-base-image] ERROR: %s\n' "$*" >&2
	exit 1
}
usage() { sed -n '2,22s/^# \{0,1\}//p' "$0"; }

while (($#)); do
	case $1 in
	--stand-in) STAND_IN=1 ;;
	--force) FORCE=1 ;;
	--verbose | -v) VERBOSE=1 ;;
	--image)
		[[ $# -ge 2 ]] || die "--image needs a value"
		IMAGE=$2
		shift
		;;
	--image=*) IMAGE=${1#*=} ;;
	--mirror)
		[[ $# -ge 2 ]] || die "--mirror needs a value"
		MIRROR=$2 MIRROR_FROM=--mirror
		shift
		;;
	--mirror=*) MIRROR=${1#*=} MIRROR_FROM=--mirror ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

# ---------------------------------------------------------------------------------------------
# Mirror discovery: print "URI SUITE" for every enabled binary ("deb") source the host's apt uses.
apt_source_pairs() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		# one-line format: deb [opt=val ...] URI SUITE COMPONENT...
		awk '{
			sub(/[ \t]#.*$/, ""); sub(/^#.*$/, "")
			if ($1 != "deb") next
			line = $0
			sub(/^[ \t]*deb[ \t]+/, "", line)
			if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
			n = split(line, F, /[ \t]+/)
			if (n >= 2) print F[1], F[2]
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		# deb822 format: paragraphs with Types:, URIs:, Suites:, Enabled:
		awk '
		function flush(   n, m, i, j, U, S) {
			if ((" " types " ") ~ / deb / && enabled != "no") {
				n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
				for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (U[i] != "" && S[j] != "") print U[i], S[j]
			}
			types = uris = suites = ""; enabled = "yes"
		}
		BEGIN { enabled = "yes" }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/ { next }
		/^[A-Za-z0-9-]+:/ {
			key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
			gsub(/^[ \t]+|[ \t]+$/, "", val)
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "enabled") enabled = tolower(val)
		}
		END { flush() }' "$f"
	done
}

# Turn an apt URI into one debootstrap can use (or nothing).
usable_uri() {
	local uri=$1
	case $uri in
	mirror+file:*)
		# apt's mirror method: the file lists mirrors, one a line; take the first.
		local list=${uri#mirror+file:}
		list=${list#//}
		[[ -r $list ]] && awk '!/^[ \t]*(#|$)/ {print $1; exit}' "$list" | sed 's/^mirror+//'
		;;
	http://* | https://* | file:/* | ftp://*) printf '%s\n' "$uri" ;;
	*) ;; # cdrom:, tor+, mirror+http, ... : debootstrap can't use them
	esac
}

host_mirror() {
	local pairs uri suite candidate
	pairs=$(apt_source_pairs 2>/dev/null || true)
	# Prefer a source that serves bookworm itself, else any Debian archive (same layout, other suite).
	for want in '^bookworm$' '^(bullseye|trixie|forky|duke|sid|oldstable|stable|testing|unstable)$'; do
		while read -r uri suite; do
			[[ -n ${uri:-} && ${suite:-} =~ $want ]] || continue
			candidate=$(usable_uri "$uri")
			if [[ -n $candidate ]]; then
				printf '%s\n' "$candidate"
				return 0
			fi
		done <<<"$pairs"
	done
	return 0
}

# ---------------------------------------------------------------------------------------------
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null; }
human_size() { numfmt --to=iec-i --suffix=B "$1" 2>/dev/null || printf '%s bytes' "$1"; }

# Packages of PACKAGES that an existing image's label does not list (one a line; none: up to date).
missing_packages() {
	local have
	have=$(docker image inspect -f "{{index .Config.Labels \"$PACKAGES_LABEL\"}}" "$1" 2>/dev/null || true)
	comm -23 <(tr ',' '\n' <<<"$PACKAGES" | sort -u) <(tr ',' '\n' <<<"$have" | sed '/^$/d' | sort -u)
}

tag_stand_in() {
	local ours theirs label
	ours=$(image_id "$IMAGE")
	if image_exists "$STAND_IN_TAG"; then
		theirs=$(image_id "$STAND_IN_TAG")
		if [[ $theirs == "$ours" ]]; then
			log "$STAND_IN_TAG already points at $IMAGE"
			return 0
		fi
		label=$(docker image inspect -f '{{index .Config.Labels "org.coderl.base"}}' "$STAND_IN_TAG" 2>/dev/null || true)
		if [[ $label != debootstrap && $FORCE -ne 1 ]]; then
			log "WARNING: $STAND_IN_TAG already exists locally and is not a stand-in built here" \
				"(${theirs:7:12}); leaving it alone (use --force to replace the tag)"
			return 0
		fi
		log "re-pointing $STAND_IN_TAG (was ${theirs:7:12}) at $IMAGE"
	fi
	log "tagging $IMAGE as stand-in $STAND_IN_TAG"
	docker tag "$IMAGE" "$STAND_IN_TAG"
}

# ---------------------------------------------------------------------------------------------
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "Docker engine unreachable (is dockerd running?)"

if image_exists "$IMAGE" && [[ $FORCE -ne 1 ]]; then
	missing=$(missing_packages "$IMAGE")
	if [[ -z $missing ]]; then
		log "$IMAGE already exists ($(image_id "$IMAGE" | cut -c8-19)); skipping the build (use --force to rebuild)"
		if ((STAND_IN)); then tag_stand_in; fi
		exit 0
	fi
	log "$IMAGE ($(image_id "$IMAGE" | cut -c8-19)) lacks $(paste -sd, - <<<"$missing")" \
		"(per its $PACKAGES_LABEL label): rebuilding it"
fi

[[ $EUID -eq 0 ]] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"

if [[ -n $MIRROR ]]; then
	log "mirror: $MIRROR (from $MIRROR_FROM)"
else
	MIRROR=$(host_mirror)
	if [[ -n $MIRROR ]]; then
		log "mirror: $MIRROR (from the host's apt sources)"
	else
		log "mirror: debootstrap's default (no usable Debian source in the host's apt sources)"
	fi
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/coderl-base.XXXXXX")
ROOTFS=$WORK/rootfs
cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	if [[ -n ${WORK:-} && -d $WORK ]]; then
		# An interrupted debootstrap can leave /proc, /sys, /dev/pts mounted inside the target:
		# unmount them (deepest first) so rm can't walk into the host's filesystems.
		awk -v r="$WORK" 'index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
		rm -rf --one-file-system "$WORK"
		log "removed $WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -m 0755 "$ROOTFS" # becomes the image's "/": mktemp's 0700 would lock "nobody" out

SECONDS=0
log "debootstrap --variant=minbase --include=$PACKAGES $SUITE $ROOTFS ${MIRROR:-<default mirror>}"
args=(--variant=minbase "--include=$PACKAGES" "$SUITE" "$ROOTFS")
[[ -n $MIRROR ]] && args+=("$MIRROR")
if ((VERBOSE)); then
	debootstrap "${args[@]}" 2>&1 | tee "$WORK/debootstrap.log"
elif ! debootstrap "${args[@]}" >"$WORK/debootstrap.log" 2>&1; then
	tail -n 40 "$WORK/debootstrap.log" >&2
	[[ -r $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 20 "$ROOTFS/debootstrap/debootstrap.log" >&2
	die "debootstrap failed (log above)"
fi
log "debootstrap done in ${SECONDS}s ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"

log "stripping apt lists, package cache, docs, man pages, locales and logs"
R=$ROOTFS
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb \
	"$R"/var/cache/apt/archives/partial/* "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old \
	"$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/lintian/* "$R"/usr/share/linda/* \
	"$R"/var/log/apt/* "$R"/var/log/*.log "$R"/tmp/* "$R"/var/tmp/* "$R"/etc/resolv.conf
# keep licences (doc/*/copyright) and the locale alias table
find "$R"/usr/share/doc -depth -mindepth 1 \( -type f -o -type l \) ! -name copyright -delete
find "$R"/usr/share/doc -depth -mindepth 1 -type d -empty -delete
find "$R"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# keep them out of anything apt installs later in derived images too (like debian:*-slim)
cat >"$R"/etc/dpkg/dpkg.cfg.d/coderl-slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat >"$R"/etc/apt/apt.conf.d/docker-clean <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
EOF
log "rootfs now $(du -sh --one-file-system "$ROOTFS" | cut -f1)"

log "docker import -> $IMAGE"
# /dev, /proc and /sys are provided by the container runtime; ship them empty.
tar --numeric-owner -C "$ROOTFS" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
	docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change "LABEL $BASE_LABEL" \
		--change "LABEL $PACKAGES_LABEL=$PACKAGES" \
		--change 'CMD ["bash"]' \
		--message "debootstrap --variant=minbase --include=$PACKAGES $SUITE" \
		- "$IMAGE" >/dev/null

log "smoke test: python3 + numpy, pip, venv and redis-server in $IMAGE"
docker run --rm --network none "$IMAGE" sh -ec '
	python3 -c "import sys, numpy, ensurepip; print(\"python\", sys.version.split()[0], \"numpy\", numpy.__version__)"
	python3 -m pip --version
	redis-server --version'

if ((STAND_IN)); then tag_stand_in; fi
log "built $IMAGE ($(image_id "$IMAGE" | cut -c8-19), $(human_size "$(docker image inspect -f '{{.Size}}' "$IMAGE")"))" \
	"in ${SECONDS}s"
