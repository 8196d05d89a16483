#!/usr/bin/env bash
# Install what wasmbot needs on a Debian 12 machine, idempotently, and build its toolchain image.
#
#   bash deploy/setup.sh
#
# System packages: podman + runc (build sandbox), debootstrap (toolchain images), redis-server
# (production broker and the tests), docker-registry (local OCI registry), clang/lld/wasi-libc
# (also used by the tests to make WebAssembly fixtures), skopeo (the tests read wasmbot's OCI
# layout store, write Docker v2s2 images and check conformance with it), chromium (the hub's browser tests,
# through Playwright's executable_path), etcd-server (with apiextensions-apiserver,
# built from the Go module proxy, the tests' Kubernetes API server).  Then wasmbot itself with its dev
# extras, then the toolchain images (cached in podman's storage, rebuilt when a recipe changes).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(podman runc uidmap debootstrap redis-server docker-registry clang lld wasi-libc
          libclang-rt-14-dev-wasm32 curl ca-certificates etcd-server skopeo
          chromium)  # the hub's browser tests drive Debian's Chromium through Playwright (no browser downloads)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The test filters are built from source with npm (AssemblyScript) and Go >= 1.24 (wasip1
# c-shared); this machine kind ships both.  Node.js comes from Debian when it is missing.
if ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm >&2
fi
# The published Slack/GitHub API descriptions the contract tests check every call against (npm, pinned).
bash deploy/tools/api-specs.sh >/dev/null
go_minor=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 24 ]; then
  echo "setup: Go 1.24 or newer is needed to build the Go test filter (found: ${go_minor:+1.$go_minor}${go_minor:-none})" >&2
  exit 1
fi
if ! command -v rustup >/dev/null; then
  echo "setup: rustup is needed to make the Rust toolchain image (this machine kind ships it)" >&2
  exit 1
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]" >&2

# The deploy tests read what they did back with kubectl; Debian's kubernetes-client when none is here.
if ! command -v kubectl >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends kubernetes-client >&2
fi
bash deploy/tools/apiextensions-apiserver.sh >/dev/null
# The OCI conformance test's peers (tests/test_oci_conformance.py; skopeo is above): oras, crane and
# Istio's own Wasm fetcher, built from the Go module proxy once and cached under ~/.cache/wasmbot/bin/.
for tool in oras crane istio-fetch; do
  bash "deploy/tools/$tool.sh" >/dev/null
done
# Rust with the wasm32-wasip1 target for the conformance suite's Rust SDK examples (tests/conformance).
bash deploy/tools/rust-wasm.sh >/dev/null

# Every toolchain with a local recipe (tinygo has only a production Containerfile).
for toolchain in c cpp go rust assemblyscript; do
  bash deploy/toolchains/build-image.sh "$toolchain" >/dev/null
done
echo "setup: done" >&2
