#!/usr/bin/env bash
# Add a minimal Rust toolchain with the wasm32 targets to the image root ($1), installed by
# rustup into a scratch RUSTUP_HOME (the host's own toolchains are left alone).
set -euo pipefail
root=$1
version=$(cat "$(dirname "$0")/rust-version")
scratch=$(mktemp -d /var/tmp/wasmbot-rustup.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export RUSTUP_HOME=$scratch/rustup CARGO_HOME=$scratch/cargo
rustup toolchain install "$version" --profile minimal --no-self-update \
  --target wasm32-wasip1 --target wasm32-unknown-unknown >&2
mkdir -p "$root/opt"
cp -a "$RUSTUP_HOME/toolchains/$version-x86_64-unknown-linux-gnu" "$root/opt/rust"
