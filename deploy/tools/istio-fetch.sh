#!/usr/bin/env bash
# Build deploy/tools/istio-fetch (Istio's own Wasm image fetcher, istio.io/istio/pkg/wasm at the
# version its go.mod pins) once and print the binary's path.  The OCI conformance test
# (tests/test_oci_conformance.py) checks with it what Istio makes of wasmbot's images.  Istio's
# dependency tree is large (several minutes cold), so the binary is cached under
# ~/.cache/wasmbot/bin/istio-fetch-VERSION-HASH/, HASH being that of the program's source
# (main.go, go.mod, go.sum): a change to any of them builds it again.
set -euo pipefail

src="$(cd "$(dirname "$0")/istio-fetch" && pwd)"
version="$(sed -n 's|^require istio.io/istio \(v[^ ]*\)$|\1|p' "$src/go.mod")"
[[ -n "$version" ]] || { echo "istio-fetch.sh: no 'require istio.io/istio VERSION' line in $src/go.mod" >&2; exit 1; }
hash="$(cd "$src" && cat main.go go.mod go.sum | sha256sum | cut -c1-12)"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/istio-fetch-${version##*-}-$hash"
fetch="$bindir/istio-fetch"

if [[ ! -x "$fetch" ]]; then
    command -v go >/dev/null || { echo "istio-fetch.sh: go is needed to build istio-fetch" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "istio-fetch.sh: building istio-fetch (istio.io/istio $version) into $bindir (once; takes minutes)" >&2
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$fetch.partial" .)
    mv "$fetch.partial" "$fetch"
fi
echo "$fetch"
