"""The pull store is an OCI image layout that skopeo reads, whatever manifest the registry had
(issue 20, defect 6): ``wasmbot pull`` each variant, then ``skopeo copy oci:STORE:REF dir:…``
must find the image and give back the module's bytes."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from conftest import registry_host
from ocihelp import built, client, host_of, module_bytes
from test_pipeline import oci_validator

from bot.localservices import Service
from workers.oci import image, reference
from workers.oci.push import push
from workers.oci.store import SOURCE_DIGEST_ANNOTATION


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=False)


def push_docker_v2s2(registry: Service, tmp_path: Path, name: str, module: bytes) -> None:
    """Our compat image, rewritten by skopeo as a Docker v2 schema 2 manifest."""
    push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/{name}-source:v1"),
         built("compat", module))
    host = registry_host(registry)
    copied = skopeo("copy", "--format", "v2s2", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{host}/{name}-source:v1", f"docker://{host}/{name}:v1")
    assert copied.returncode == 0, copied.stderr


def module_in(copied: Path, variant: str) -> bytes:
    """The module in a ``dir:`` copy, read from the layer the variant keeps it in."""
    manifest = json.loads((copied / "manifest.json").read_text())
    kind = "oci" if variant == "oci" else "compat"
    layer = image.module_layer(manifest, kind)
    data = (copied / layer["digest"].split(":", 1)[1]).read_bytes()
    return data if variant == "oci" else image.plugin_from_tar(io.BytesIO(data), 1 << 28)


@pytest.mark.parametrize("variant", ["compat", "oci", "docker"])
def test_skopeo_reads_every_pulled_image_from_the_store(registry: Service, tmp_path: Path, wasmbot_cli,
                                                        variant: str) -> None:
    module = module_bytes(padding=3000)
    name = f"{host_of(registry)}/skopeo-reads/{variant}:v1"
    if variant == "docker":
        push_docker_v2s2(registry, tmp_path, f"skopeo-reads/{variant}", module)
    else:
        push(client(registry, tmp_path), reference.parse(name), built(variant, module))
    pulled = wasmbot_cli("pull", name, "-o", str(tmp_path / "pulled.wasm"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled.wasm").read_bytes() == module
    store = tmp_path / "cli-data" / "oci"
    copied = skopeo("copy", f"oci:{store}:{name}", f"dir:{tmp_path / 'copied'}")
    assert copied.returncode == 0, copied.stderr
    assert module_in(tmp_path / "copied", variant) == module
    entry = json.loads((store / "index.json").read_text())["manifests"][-1]
    assert entry["mediaType"] == image.MANIFEST_MEDIA_TYPE
    stored = (store / "blobs" / entry["digest"].replace(":", "/")).read_bytes()
    oci_validator().validate(json.loads(stored))
    if variant == "docker":  # converted to OCI on store: the registry's digest is recorded beside it
        found = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry_host(registry)}/skopeo-reads/docker:v1")
        assert json.loads(found.stdout)["mediaType"] == image.DOCKER_MANIFEST_MEDIA_TYPE
        assert entry["annotations"][SOURCE_DIGEST_ANNOTATION] in pulled.stdout
        assert (store / "blobs" / entry["annotations"][SOURCE_DIGEST_ANNOTATION].replace(":", "/")).is_file()
