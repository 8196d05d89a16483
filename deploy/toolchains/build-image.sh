#!/usr/bin/env bash
# Build a wasmbot toolchain image from Debian packages, unless one for the same recipe exists.
#
#   deploy/toolchains/build-image.sh c        # prints the image reference on its last line
#
# Images cannot be pulled on every machine, so each is made from a `debootstrap --variant=minbase`
# root file system plus the packages listed in deploy/toolchains/<name>/packages; then the
# recipe's optional extra.sh adds what comes from other registries (Go from the module proxy,
# Rust from rustup), its optional env file sets the image's environment, and the root is
# `podman import`ed. The tag is a hash of the recipe (this script and the recipe folder): the
# image is rebuilt only when the recipe changes, and podman's own storage is the cache.
# Each folder's Containerfile is the production equivalent, built from the official images.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: build-image.sh TOOLCHAIN (one of: $(cd "$here" && ls -d */ | tr -d / | tr '\n' ' '))}
recipe="$here/$name"
[ -d "$recipe" ] || { echo "build-image.sh: no toolchain $name" >&2; exit 2; }
[ -f "$recipe/packages" ] || {
  echo "build-image.sh: toolchain $name has no local recipe (only $recipe/Containerfile; see its comment)" >&2
  exit 3
}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/../containers.conf}
podman=(podman --runtime runc --cgroup-manager cgroupfs)

hash=$(cat "$0" "$recipe"/* | sha256sum | cut -c1-12)
image="localhost/wasmbot/toolchain-$name:$hash"
if "${podman[@]}" image exists "$image"; then
  echo "toolchain image $image is cached" >&2
  echo "$image"
  exit 0
fi

# The Debian mirror this machine's apt already uses (no host is hard-coded here).
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -E '^(URIs:|deb )' | grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//' || true)}
[ -n "$mirror" ] || { echo "build-image.sh: no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2; exit 2; }
suite=${DEBIAN_SUITE:-bookworm}
packages=$(grep -v '^#' "$recipe/packages" | xargs | tr ' ' ,)

root=$(mktemp -d /var/tmp/wasmbot-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building $image: debootstrap $suite from $mirror with $packages" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
if [ -x "$recipe/extra.sh" ]; then
  echo "building $image: $recipe/extra.sh" >&2
  "$recipe/extra.sh" "$root" >&2
fi
changes=(--change 'WORKDIR /src')
if [ -f "$recipe/env" ]; then
  while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "ENV $line"); done < "$recipe/env"
else
  changes+=(--change 'ENV PATH=/usr/local/bin:/usr/bin:/bin')
fi
tar --numeric-owner -C "$root" -c . | "${podman[@]}" import "${changes[@]}" \
  --message "wasmbot toolchain $name (recipe $hash)" - "$image" >&2
echo "$image"
