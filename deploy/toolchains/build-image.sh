#!/usr/bin/env bash
# Build a wasmbot toolchain image from Debian packages, unless one for the same recipe exists.
#
#   deploy/toolchains/build-image.sh c        # prints the image reference on its last line
#
# Images cannot be pulled on every machine, so each is made from a `debootstrap --variant=minbase`
# root file system plus the packages listed in deploy/toolchains/<name>/packages; then the
# recipe's optional extra.sh adds what comes from other registries (Go from the module proxy,
# Rust from rustup), its optional env file sets the image's environment, and the root is
# `podman import`ed (deploy/debian-rootfs.sh). The tag is a hash of the recipe (these scripts and
# the recipe folder): the image is rebuilt only when the recipe changes, and podman's own storage
# is the cache.
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
source "$here/../debian-rootfs.sh"

hash=$(cat "$0" "$here/../debian-rootfs.sh" "$recipe"/* | sha256sum | cut -c1-12)
image="localhost/wasmbot/toolchain-$name:$hash"
if "${podman[@]}" image exists "$image"; then
  echo "toolchain image $image is cached" >&2
  echo "$image"
  exit 0
fi

changes=(--change 'WORKDIR /src')
if [ -f "$recipe/env" ]; then
  while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "ENV $line"); done < "$recipe/env"
else
  changes+=(--change 'ENV PATH=/usr/local/bin:/usr/bin:/bin')
fi
extra=""; [ -x "$recipe/extra.sh" ] && extra="$recipe/extra.sh"
debian_image "$image" "$recipe/packages" "wasmbot toolchain $name (recipe $hash)" "$extra" "${changes[@]}"
echo "$image"
