#!/usr/bin/env bash
# Build wasmbot's image from the top-level Dockerfile with podman, where public images cannot be
# pulled and a container build cannot reach the package index.
#
#   bash deploy/image.sh        # prints the image id, then localhost/wasmbot:latest, last
#
# - Base: `debootstrap --variant=minbase bookworm` with deploy/image/packages, so the
#   Dockerfile's apt step finds nothing missing; imported as localhost/wasmbot-base:bookworm-HASH,
#   HASH being of its recipe (rebuilt only when the package list or deploy/debian-rootfs.sh changes).
# - Wheels: the dependencies are built here, with this machine's pip settings (index, proxy,
#   certificates), for the base's Python version, cached in ~/.cache/wasmbot/image-wheels/ by that
#   version and the hash of pyproject.toml, and handed to the build in deploy/image/wheels with
#   WHEELS=1 (no index).
#   wasmbot's own wheel is built from the source by the Dockerfile's builder stage.
# - podman's layer cache does the rest: a second run with nothing changed rebuilds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tag=localhost/wasmbot:latest
source "$here/debian-rootfs.sh"

base_hash=$(cat "$here/debian-rootfs.sh" "$here/image/packages" | sha256sum | cut -c1-12)
base="localhost/wasmbot-base:bookworm-$base_hash"
if "${podman[@]}" image exists "$base"; then
  echo "base image $base is cached" >&2
else
  debian_image "$base" "$here/image/packages" "wasmbot base (recipe $base_hash)" "" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]'
fi

# Wheels for the base's Python: the host's must be of the same minor version (the same ABI), and
# requirements whose markers differ between the two patch releases are added (image/missing.py).
python=$("${podman[@]}" run --rm "$base" python3 -c 'import platform; print(platform.python_version())')
host_python=$(python3 -c 'import platform; print(platform.python_version())')
if [ "${python%.*}" != "${host_python%.*}" ]; then
  echo "image.sh: the image runs Python $python; this machine's python3 is $host_python, whose" \
       "wheels would not fit. Put a Python ${python%.*} first on PATH." >&2
  exit 2
fi
wheels_hash=$(cat "$root/pyproject.toml" "$here/image/requirements.py" "$here/image/missing.py" | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/image-wheels/$python-$wheels_hash"
if [ -f "$cache/complete" ]; then
  echo "wheels in $cache are cached" >&2
else
  echo "building the dependencies' wheels for Python $python into $cache" >&2
  rm -rf "$cache.partial" && mkdir -p "$cache.partial"
  requirements="$cache.partial/requirements.txt"
  python3 "$here/image/requirements.py" "$root/pyproject.toml" > "$requirements"
  pip_wheel=(python3 -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$cache.partial")
  "${pip_wheel[@]}" --requirement "$requirements" >&2
  while unmet=$(python3 "$here/image/missing.py" "$cache.partial" "$python" "$requirements") && [ -n "$unmet" ]; do
    echo "adding wheels for Python $python: $unmet" | tr '\n' ' ' >&2; echo >&2
    mapfile -t unmet_list <<< "$unmet"
    "${pip_wheel[@]}" "${unmet_list[@]}" >&2
  done
  touch "$cache.partial/complete"
  rm -rf "$cache" && mv "$cache.partial" "$cache"
fi
context_wheels="$here/image/wheels"
find "$context_wheels" -name '*.whl' -delete
cp --link "$cache"/*.whl "$context_wheels/" 2>/dev/null || cp "$cache"/*.whl "$context_wheels/"

revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || true)
# --format docker: the OCI format has no HEALTHCHECK, and podman would drop it.
"${podman[@]}" build --format docker --layers --file "$root/Dockerfile" --tag "$tag" \
  --build-arg BASE="$base" --build-arg WHEELS=1 --build-arg REVISION="$revision" "$root" >&2
"${podman[@]}" image inspect --format '{{.Id}}' "$tag"
echo "$tag"
