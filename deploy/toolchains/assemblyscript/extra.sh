#!/usr/bin/env bash
# Add npm to the image root ($1) from the npm registry: npm's own package bundles its
# dependencies, so unpacking it and a two-line launcher is the whole installation.
set -euo pipefail
root=$1
version=$(cat "$(dirname "$0")/npm-version")
scratch=$(mktemp -d /var/tmp/wasmbot-npm.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "npm@$version" >/dev/null)
mkdir -p "$root/usr/local/lib/node_modules/npm" "$root/usr/local/bin"
tar -xzf "$scratch"/npm-*.tgz --strip-components=1 -C "$root/usr/local/lib/node_modules/npm"
for tool in npm npx; do
  printf '#!/bin/sh\nexec node /usr/local/lib/node_modules/npm/bin/%s-cli.js "$@"\n' "$tool" > "$root/usr/local/bin/$tool"
  chmod 755 "$root/usr/local/bin/$tool"
done
