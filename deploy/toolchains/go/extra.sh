#!/usr/bin/env bash
# Add Go to the image root ($1) from the Go module proxy: golang.org/toolchain is how the go
# command itself fetches toolchains (GOTOOLCHAIN), so this works wherever Go modules do.
set -euo pipefail
root=$1
version=$(cat "$(dirname "$0")/go-version")
zip=$(cd / && GOFLAGS= GO111MODULE=on go mod download -json "golang.org/toolchain@v0.0.1-go$version.linux-amd64" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Zip"])')
python3 - "$zip" "$root/usr/local/go" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        name = info.filename.split("/", 2)[2]  # strip golang.org/toolchain@version/
        if not name or info.is_dir():
            continue
        path = os.path.join(dest, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as f, open(path, "wb") as out:
            out.write(f.read())
        # module zips keep no modes: executables are what the go command marks so
        if name.startswith("bin/") or name.startswith("pkg/tool/"):
            os.chmod(path, 0o755)
PY
