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

python3 - "$port" "$WASMBOT_DATA_DIR" <<'PY'
import hashlib, json, sys, urllib.request
from pathlib import Path
port, data = sys.argv[1], Path(sys.argv[2])
request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/hello/manifests/v1",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
manifest = json.load(urllib.request.urlopen(request))
layer = next(l for l in manifest["layers"]
             if l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
built = max(data.glob("artifacts/*/filter.wasm"), key=lambda p: p.stat().st_mtime)
digest = "sha256:" + hashlib.sha256(built.read_bytes()).hexdigest()
if layer["digest"] != digest:
    sys.exit(f"quickstart: module layer {layer['digest']} differs from {built} ({digest})")
print(f"quickstart: module layer digest equals sha256 of the built {built.name}: {digest}")
PY
