#!/usr/bin/env bash
# Build Helm from the Go module proxy once and print the binary's path.
# The binary is cached under ~/.cache/wasmbot/bin/helm-$HELM_VERSION/ so later runs reuse it.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/helm-$HELM_VERSION"
helm="$bindir/helm"

if [[ ! -x "$helm" ]]; then
    command -v go >/dev/null || { echo "helm.sh: go is needed to build Helm $HELM_VERSION" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "helm.sh: building helm $HELM_VERSION into $bindir (once; takes minutes)" >&2
    # As Helm's Makefile does: stamp the version, and the Kubernetes version that `helm
    # template` and `helm lint` assume (from the client-go that Helm is built with).
    gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')"
    k8s_minor="$(sed -n 's|^\s*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$gomod")"
    [[ -n "$k8s_minor" ]] || { echo "helm.sh: no k8s.io/client-go version in $gomod" >&2; exit 1; }
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in pkg/chartutil pkg/lint/rules; do
        ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
    done
    GOBIN="$bindir" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "$helm"
