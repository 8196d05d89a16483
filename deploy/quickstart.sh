#!/usr/bin/env bash
# The README's first command: set everything up, then build, test and push the example filter
# on the embedded defaults (no Redis, no Slack or GitHub tokens) to a local registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh

export WASMBOT_DATA_DIR=${WASMBOT_DATA_DIR:-$PWD/.wasmbot}
port=${WASMBOT_QUICKSTART_PORT:-5000}
ref="localhost:$port/hello:v1"

# A local registry for the duration of this script (wasmbot dev runs one with a worker and the
# web app; here the registry alone is enough: `wasmbot run` starts its own worker).
python3 - "$WASMBOT_DATA_DIR/registry" "$port" <<'PY' &
import signal, sys
from pathlib import Path
from bot.localservices import start_registry
registry = start_registry(Path(sys.argv[1]), port=int(sys.argv[2]))
print(f"quickstart: registry on {registry.url}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: (registry.stop(), sys.exit(0)))
signal.pause()
PY
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null; wait $registry_pid 2>/dev/null || true' EXIT
curl -fsS --retry 50 --retry-connrefused --retry-delay 0 -o /dev/null "http://127.0.0.1:$port/v2/"

wasmbot run "/wasm build examples/hello-c --tag $ref"

echo
echo "quickstart: the manifest as the registry serves it:"
curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$port/v2/hello/manifests/v1" | python3 -m json.tool

# Pull the image back with wasmbot's own client (digests verified) and compare the module.
built=$(ls -t "$WASMBOT_DATA_DIR"/artifacts/*/filter.wasm | head -1)
wasmbot pull "$ref" -o "$WASMBOT_DATA_DIR/pulled.wasm"
wasmbot inspect "$ref"
if ! cmp -s "$built" "$WASMBOT_DATA_DIR/pulled.wasm"; then
  echo "quickstart: the pulled plugin.wasm differs from the built $built" >&2
  exit 1
fi
echo "quickstart: the pulled plugin.wasm is byte-identical to the built $(basename "$built")"
