#!/usr/bin/env bash
# Install the Rust toolchain of the toolchain image (deploy/toolchains/rust/rust-version) with the
# wasm32-wasip1 target once, from rustup's distribution server, and print its bin directory.
# The conformance tests build the Rust SDK examples with it (tests/conformance/build_examples.py).
# Cached under ~/.cache/wasmbot/rust/$VERSION/ in its own RUSTUP_HOME: the host's toolchains are
# left alone, and a second run downloads nothing.
set -euo pipefail

VERSION=$(cat "$(dirname "$0")/../toolchains/rust/rust-version")
home="${XDG_CACHE_HOME:-$HOME/.cache}/wasmbot/rust/$VERSION"
bin="$home/rustup/toolchains/$VERSION-x86_64-unknown-linux-gnu/bin"

if [[ ! -d "$home/rustup/toolchains/$VERSION-x86_64-unknown-linux-gnu/lib/rustlib/wasm32-wasip1" ]]; then
    command -v rustup >/dev/null || { echo "rust-wasm.sh: rustup is needed" >&2; exit 1; }
    echo "rust-wasm.sh: installing Rust $VERSION with wasm32-wasip1 into $home (once)" >&2
    mkdir -p "$home"
    RUSTUP_HOME="$home/rustup" CARGO_HOME="$home/cargo" rustup toolchain install "$VERSION" \
        --profile minimal --no-self-update --target wasm32-wasip1 >&2
fi
echo "$bin"
