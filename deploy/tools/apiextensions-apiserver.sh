#!/usr/bin/env bash
# Build k8s.io/apiextensions-apiserver from the Go module proxy once and print the binary's path.
# The deploy tests run it on etcd as a real Kubernetes API server for the Istio and Gloo CRDs
# (tests/kubeserver.py).  Cached under ~/.cache/wasmbot/bin/apiextensions-apiserver-$VERSION/.
set -euo pipefail

VERSION="${APIEXTENSIONS_APISERVER_VERSION:-v0.34.2}"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/apiextensions-apiserver-$VERSION"
server="$bindir/apiextensions-apiserver"

if [[ ! -x "$server" ]]; then
    command -v go >/dev/null || { echo "apiextensions-apiserver.sh: go is needed" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "apiextensions-apiserver.sh: building $VERSION into $bindir (once; takes minutes)" >&2
    GOBIN="$bindir" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "-s -w" "k8s.io/apiextensions-apiserver@$VERSION"
fi
echo "$server"
