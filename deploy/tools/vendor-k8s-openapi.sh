#!/usr/bin/env bash
# Refresh tests/testdata/k8s-openapi/ from a Kubernetes release (see tests/testdata/README.md).
# The kubernetes/kubernetes repository ships api/openapi-spec/v3/*.json in its Go module
# (k8s.io/kubernetes), so the module proxy serves them; each file keeps its `openapi`, `info`
# and `components` members unchanged and drops `paths` (the REST operations, 60-80% of the
# bytes), which schema validation does not use.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
FILES=(api__v1_openapi.json apis__apps__v1_openapi.json apis__networking.k8s.io__v1_openapi.json
       apis__rbac.authorization.k8s.io__v1_openapi.json)
out="$(cd "$(dirname "$0")/../.." && pwd)/tests/testdata/k8s-openapi"
modcache="$(mktemp -d)"
trap 'chmod -R u+w "$modcache"; rm -rf "$modcache"' EXIT

dir="$(GOMODCACHE="$modcache" GOFLAGS=-modcacherw go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
mkdir -p "$out"
for name in "${FILES[@]}"; do
    python3 - "$dir/api/openapi-spec/v3/$name" "$out/$name" <<'PY'
import json, sys
source, target = sys.argv[1:]
with open(source) as f:
    doc = json.load(f)
del doc["paths"]
with open(target, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
    f.write("\n")
PY
    echo "$name: $(git hash-object "$dir/api/openapi-spec/v3/$name") -> $(wc -c <"$out/$name") bytes"
done
