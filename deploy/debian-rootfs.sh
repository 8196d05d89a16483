# Make a podman image from Debian packages without pulling one: sourced by
# deploy/toolchains/build-image.sh (toolchain images) and deploy/image.sh (wasmbot's base).
#
#   source deploy/debian-rootfs.sh
#   debian_image IMAGE PACKAGES_FILE MESSAGE EXTRA_SCRIPT [--change INSTRUCTION ...]
#
# A `debootstrap --variant=minbase` root with the packages of PACKAGES_FILE (one a line, `#`
# comments), then `EXTRA_SCRIPT ROOT` unless it is "" (what comes from other registries), then
# `podman import` with the --change instructions.  Callers decide the tag and the cache key.

export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}
podman=(podman --runtime runc --cgroup-manager cgroupfs)

# The Debian mirror this machine's apt already uses (no host is hard-coded here).
debian_mirror() {
  local mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -E '^(URIs:|deb )' | grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//' || true)}
  [ -n "$mirror" ] || { echo "no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2; return 2; }
  echo "$mirror"
}

debian_image() (  # a subshell, so that its EXIT trap removes the root and nothing of the caller's
  set -euo pipefail
  local image=$1 packages_file=$2 message=$3 extra=$4
  shift 4
  local mirror suite=${DEBIAN_SUITE:-bookworm} packages root
  mirror=$(debian_mirror)
  packages=$(grep -v '^#' "$packages_file" | xargs | tr ' ' ,)
  root=$(mktemp -d /var/tmp/wasmbot-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "building $image: debootstrap $suite from $mirror with $packages" >&2
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  if [ -n "$extra" ]; then
    echo "building $image: $extra" >&2
    "$extra" "$root" >&2
  fi
  tar --numeric-owner -C "$root" -c . | "${podman[@]}" import "$@" --message "$message" - "$image" >&2
)
