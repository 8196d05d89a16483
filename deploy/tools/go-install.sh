#!/usr/bin/env bash
# go-install.sh NAME PACKAGE VERSION [LDFLAGS]: build a Go command from the Go module proxy once
# and print the binary's path.  Cached under ~/.cache/wasmbot/bin/NAME-VERSION/, so a second run
# (and every CI run after the first) builds nothing.  oras.sh, crane.sh and
# apiextensions-apiserver.sh pin their versions and call this.
set -euo pipefail

name="$1" package="$2" version="$3" ldflags="${4:--s -w}"
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/bin/$name-$version"
binary="$bindir/$name"

if [[ ! -x "$binary" ]]; then
    command -v go >/dev/null || { echo "go-install.sh: go is needed to build $name $version" >&2; exit 1; }
    mkdir -p "$bindir"
    echo "go-install.sh: building $name $version into $bindir (once; takes a minute or more)" >&2
    GOBIN="$bindir" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "$ldflags" "$package@$version"
fi
echo "$binary"
