#!/usr/bin/env bash
# Build crane (go-containerregistry) from the Go module proxy once and print the binary's path.
# The OCI conformance test (tests/test_oci_conformance.py) pulls wasmbot's images with it and
# pushes images for wasmbot to pull; bench/oci.py times it.  Cached under
# ~/.cache/wasmbot/bin/crane-$CRANE_VERSION/.
set -euo pipefail

CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/crane-$CRANE_VERSION"
crane="$bindir/crane"

if [[ -f "$bindir" ]]; then  # a copy built by hand at the directory's name (bench/oci.py's old hint)
    mv "$bindir" "$bindir.binary"
    mkdir -p "$bindir"
    mv "$bindir.binary" "$crane"
fi
if [[ ! -x "$crane" ]]; then
    command -v go >/dev/null || { echo "crane.sh: go is needed to build crane $CRANE_VERSION" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "crane.sh: building crane $CRANE_VERSION into $bindir (once; takes a minute)" >&2
    GOBIN="$bindir" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
fi
echo "$crane"
