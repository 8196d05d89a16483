"""What makes ``wasmbot push|pull`` as quick as oras and crane (issue 20, defect 7): they load only
the libraries they use, the compat layer is gzipped at the default level and reproducibly, and a
re-push of an unchanged module neither compresses, compiles nor uploads (bench/oci.py times it)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from ocihelp import blob_uploads, built, host_of, module_bytes

from bot.localservices import Service
from workers.oci import image, schema
from workers.oci.layercache import LayerCache

PROBE = """
import json, sys
from bot import cli
code = cli.main(sys.argv[1:])
print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))
"""
# Loaded by neither command once the module passed its check: the ABI test machinery (wasmtime,
# jsonschema, yaml), the front ends, the workers' broker, an HTTP library (workers/oci/transport.py
# is http.client's), pydantic (workers.oci.config reads the registry settings), nor asyncio,
# which pydantic loaded.
UNNEEDED = {"wasmtime", "jsonschema", "yaml", "celery", "kombu", "redis", "aiohttp",
            "slack_bolt", "github", "requests", "urllib3", "pydantic", "pydantic_core", "pydantic_settings",
            "asyncio"}


def loaded_by(tmp_path: Path, *argv: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_")}
    env |= {"WASMBOT_DATA_DIR": str(tmp_path / "data"), "WASMBOT_CONFIG": str(tmp_path / "none.toml"),
            "WASMBOT_DOCKER_CONFIG": str(tmp_path / "none.json")}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    code, modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    return set(modules)


def test_pull_and_a_re_push_load_no_library_they_do_not_use(registry: Service, tmp_path: Path) -> None:
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(module_bytes())
    ref = f"{host_of(registry)}/speed/imports"
    first = loaded_by(tmp_path, "push", str(wasm), f"{ref}:v1")
    assert "wasmtime" in first  # the first push compiles the module to check it: the probe sees imports
    assert sorted(first & {"jsonschema", "yaml", "requests", "pydantic"}) == []  # but reads no cases
    assert sorted(loaded_by(tmp_path, "push", str(wasm), f"{ref}:v2") & UNNEEDED) == []
    pulled = loaded_by(tmp_path, "pull", f"{ref}:v1", "-o", str(tmp_path / "out.wasm"))
    assert sorted(pulled & UNNEEDED) == []
    assert (tmp_path / "out.wasm").read_bytes() == wasm.read_bytes()


def test_the_compat_layer_is_gzip_at_the_default_level_and_reproducible() -> None:
    module = module_bytes(200_000)
    first, again = image.compat_layer(module), image.compat_layer(module)
    assert first == again
    header = first.data[:10]
    assert header[3] == 0  # FLG: no file name, no comment, no extra field
    assert header[4:8] == b"\0\0\0\0"  # MTIME 0
    assert header[8] == 0  # XFL: 2 would be level 9 ("maximum compression"), 4 the fastest
    assert gzip.decompress(first.data) == image.plugin_tar(module)
    assert built("compat", module).layers[0].digest == built("compat", module).layers[0].digest


@pytest.mark.parametrize("variant", image.VARIANTS)
def test_built_manifests_are_valid_oci_image_manifests(variant: str) -> None:
    # push no longer re-checks its own manifest against the schema: this is where it is checked.
    assert schema.problems(json.loads(built(variant).manifest())) == []


def test_a_re_push_compresses_nothing_and_uploads_nothing(registry: Service, tmp_path: Path,
                                                          wasmbot_cli) -> None:
    module = module_bytes(300_000)
    cache = LayerCache(tmp_path / "data")
    runtime = image.Runtime(["0.2.1"], ["m"])
    made = image.build("compat", module, runtime, {}, cache.compat_layer)
    assert (cache.hits, cache.misses) == (0, 1)
    again = LayerCache(tmp_path / "data")  # another process: the entry is on disk
    assert image.build("compat", module, runtime, {}, again.compat_layer).manifest() == made.manifest()
    assert (again.hits, again.misses) == (1, 0)
    assert made.manifest() == image.build("compat", module, runtime, {}).manifest()

    wasm = tmp_path / "re.wasm"
    wasm.write_bytes(module)
    ref = f"{host_of(registry)}/speed/repush"
    assert wasmbot_cli("push", str(wasm), f"{ref}:v1").returncode == 0
    uploads = blob_uploads(registry, "speed/repush")
    assert uploads == 4  # POST and PUT of the config and of the layer
    layers = tmp_path / "cli-data" / "cache" / "layers"
    entries = {p.name: p.stat().st_mtime_ns for p in layers.iterdir()}
    assert len(entries) == 2  # the layer and the load check
    again_pushed = wasmbot_cli("push", str(wasm), f"{ref}:v2")
    assert "0 blob(s) uploaded, 2 already there" in again_pushed.stdout, again_pushed.stderr
    assert blob_uploads(registry, "speed/repush") == uploads
    assert {p.name for p in layers.iterdir()} == set(entries)  # read, not made again
