#!/usr/bin/env bash
# Fetch the pinned API descriptions (deploy/tools/api-specs.txt) from npm once, check each tarball
# against its pinned integrity hash, and print the directories.  The contract tests
# (tests/apispecs.py) read them from ~/.cache/wasmbot/specs/NAME-VERSION/package/, outside the clone.
set -euo pipefail
cd "$(dirname "$0")"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/specs"
while read -r name version integrity keep; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    dir="$cache/$(echo "${name#@}" | tr / -)-$version"
    if [[ ! -f "$dir/package/package.json" ]]; then
        command -v npm >/dev/null || { echo "api-specs.sh: npm is needed to fetch $name" >&2; exit 1; }
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        echo "api-specs.sh: fetching $name@$version into $dir" >&2
        tarball=$(cd "$work" && npm pack --silent "$name@$version" | tail -n 1)
        actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
        if [[ "$actual" != "$integrity" ]]; then
            echo "api-specs.sh: $name@$version has integrity $actual, pinned $integrity" >&2
            exit 1
        fi
        mkdir -p "$work/out"
        # shellcheck disable=SC2086  # $keep is a list of paths inside the tarball
        tar -xzf "$work/$tarball" -C "$work/out" $keep
        mkdir -p "$cache"
        rm -rf "$dir"
        mv "$work/out" "$dir"
        rm -rf "$work"
        trap - EXIT
    fi
    echo "$dir"
done < api-specs.txt
