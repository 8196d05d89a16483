#!/usr/bin/env bash
# Build oras from the Go module proxy once and print the binary's path.  The OCI conformance
# test (tests/test_oci_conformance.py) pulls wasmbot's images with it and pushes images for
# wasmbot to pull; bench/oci.py times it.  Cached under ~/.cache/wasmbot/bin/oras-$ORAS_VERSION/.
set -euo pipefail

ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/oras-$ORAS_VERSION"
oras="$bindir/oras"

if [[ -f "$bindir" ]]; then  # a copy built by hand at the directory's name (bench/oci.py's old hint)
    mv "$bindir" "$bindir.binary"
    mkdir -p "$bindir"
    mv "$bindir.binary" "$oras"
fi
if [[ ! -x "$oras" ]]; then
    command -v go >/dev/null || { echo "oras.sh: go is needed to build oras $ORAS_VERSION" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "oras.sh: building oras $ORAS_VERSION into $bindir (once; takes a minute)" >&2
    GOBIN="$bindir" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "-s -w" "oras.land/oras/cmd/oras@$ORAS_VERSION"
fi
echo "$oras"
