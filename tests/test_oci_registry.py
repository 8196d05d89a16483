"""workers/oci against Debian's docker-registry over plain HTTP: push, pull, inspect, tag, search,
and what goes wrong (a missing repository, 503s, a corrupted blob, an invalid tag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, registry_host
from ocihelp import blob_uploads, built, client, host_of, log_lines, module_bytes
from registries import FaultyProxy
from test_pipeline import oci_validator

from bot.localservices import Service, start_registry
from workers import sandbox
from workers.config import Settings
from workers.oci import image, reference
from workers.oci.inspect import inspect
from workers.oci.pull import pull
from workers.oci.push import push, tag
from workers.oci.registry import Corrupt, NotFound, RegistryError
from workers.oci.search import search
from workers.oci.store import Store

MAX = 256 << 20


def ref(service: Service, name: str) -> reference.Reference:
    return reference.parse(f"{host_of(service)}/{name}")


def test_repush_of_an_unchanged_module_uploads_no_blob(registry: Service, tmp_path: Path) -> None:
    registry_client = client(registry, tmp_path)
    target = ref(registry, "repush/add-header:v1")
    first = push(registry_client, target, built())
    assert (first.uploaded, first.reused) == (2, 0)
    uploads = blob_uploads(registry, "repush/add-header")
    assert uploads == 4  # POST + PUT for each of config and layer
    again = push(registry_client, target.with_tag("v2"), built())
    assert (again.uploaded, again.reused) == (0, 2)
    assert blob_uploads(registry, "repush/add-header") == uploads
    assert again.digest == first.digest  # same blobs, same annotations: the same manifest


def test_both_variants_go_under_separate_tags_and_the_job_records_both_digests(
        registry: Service, filter_module, tmp_path: Path) -> None:
    from test_push_variants import push_stage_run

    host = registry_host(registry)
    settings = Settings(data_dir=tmp_path / "data", registries={host: {"variant": "both"}})
    result = push_stage_run(filter_module("c"), f"{host}/both/add-header:v3", settings, tmp_path / "w")
    assert result["image"] == f"{host}/both/add-header:v3" and result["variant"] == "compat"
    assert result["oci_image"] == f"{host}/both/add-header:v3-oci"
    registry_client = client(registry, tmp_path)
    compat = inspect(registry_client, reference.parse(result["image"]))
    solo = inspect(registry_client, reference.parse(result["oci_image"]))
    assert (compat.variant, compat.digest) == ("compat", result["digest"])
    assert (solo.variant, solo.digest) == ("oci", result["oci_digest"])
    for found in (compat, solo):
        assert found.abi_versions == ["0.2.1"] and found.root_ids == ["add-header"]
        assert found.annotations["org.opencontainers.image.version"] == "v3"


def test_inspect_downloads_no_module_layer(registry: Service, tmp_path: Path) -> None:
    registry_client = client(registry, tmp_path)
    module = module_bytes(padding=50_000)
    pushed = push(registry_client, ref(registry, "inspected/add-header:v1"),
                  built("oci", module, {"org.opencontainers.image.source": "https://example.com/f"}))
    found = inspect(registry_client, ref(registry, "inspected/add-header:v1"))
    assert found.digest == pushed.digest and found.variant == "oci"
    assert found.abi_versions == ["0.2.1"] and found.root_ids == ["add-header"]
    assert found.module_size == len(module)
    assert found.size == pushed.size
    assert found.annotations["org.opencontainers.image.source"] == "https://example.com/f"
    layer = image.Blob(image.CONTENT_MEDIA_TYPE, module).digest
    assert log_lines(registry, rf"^GET /v2/inspected/add-header/blobs/{layer}") == []
    assert len(log_lines(registry, r"^GET /v2/inspected/add-header/blobs/")) == 1  # the config only
    text = found.text()
    assert "variant:      oci" in text and "root ids:     add-header" in text


def test_inspect_reads_the_runtime_config_in_either_spelling(registry: Service, tmp_path: Path) -> None:
    registry_client = client(registry, tmp_path)
    prose = json.dumps({"type": "envoy_proxy", "abi_version": "0.2.0", "config": {"root_ids": ["a", "b"]}})
    config = image.Blob(image.CONFIG_MEDIA_TYPE, prose.encode())
    spelled = image.Image("oci", config, [config, image.Blob(image.CONTENT_MEDIA_TYPE, module_bytes())], {})
    push(registry_client, ref(registry, "spelling/old:v1"), spelled)
    found = inspect(registry_client, ref(registry, "spelling/old:v1"))
    assert (found.abi_versions, found.root_ids) == (["0.2.0"], ["a", "b"])
    assert image.read_runtime(json.loads(built("oci").config.data)) == image.Runtime(["0.2.1"], ["add-header"])


def test_tag_adds_a_tag_without_uploading_or_downloading_blobs(registry: Service, tmp_path: Path) -> None:
    registry_client = client(registry, tmp_path)
    pushed = push(registry_client, ref(registry, "tagged/add-header:v1"), built())
    before = log_lines(registry, r"/v2/tagged/add-header/blobs/")
    tagged = tag(registry_client, ref(registry, "tagged/add-header:v1"), "stable")
    assert tagged.digest == pushed.digest and tagged.reference.endswith(":stable")
    assert log_lines(registry, r"/v2/tagged/add-header/blobs/") == before
    assert inspect(registry_client, ref(registry, "tagged/add-header:stable")).digest == pushed.digest


@pytest.mark.parametrize("variant", ["compat", "oci"])
def test_pull_verifies_and_extracts_the_module(registry: Service, tmp_path: Path, variant: str) -> None:
    registry_client = client(registry, tmp_path)
    module = module_bytes(padding=1000)
    pushed = push(registry_client, ref(registry, f"pulled/{variant}:v1"), built(variant, module))
    store = Store(tmp_path / "store")
    got = pull(registry_client, ref(registry, f"pulled/{variant}:v1"), store, MAX)
    assert got.module == module and got.digest == pushed.digest and got.variant == variant
    assert got.downloaded == 2  # compat: config and layer; oci: config (also a layer) and module
    again = pull(registry_client, ref(registry, f"pulled/{variant}@{pushed.digest}"), store, MAX)
    assert again.downloaded == 0 and again.module == module
    index = json.loads((store.root / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert f"{host_of(registry)}/pulled/{variant}:v1" in names
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_pull_reads_a_docker_v2_image_written_by_podman(registry: Service, tmp_path: Path) -> None:
    """podman re-pushes our compat image as a Docker v2 schema 2 manifest; pull reads that too."""
    registry_client = client(registry, tmp_path)
    module = module_bytes(padding=2000)
    host = registry_host(registry)
    push(registry_client, ref(registry, "docker/source:v1"), built("compat", module))
    source, target = f"{host}/docker/source:v1", f"{host}/docker/converted:v1"
    try:
        assert sandbox.podman("pull", "--tls-verify=false", source, timeout=120).returncode == 0
        pushed = sandbox.podman("push", "--tls-verify=false", "--format", "v2s2", source, target, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        sandbox.podman("rmi", "--force", source)
    found = inspect(registry_client, ref(registry, "docker/converted:v1"))
    assert found.media_type == image.DOCKER_MANIFEST_MEDIA_TYPE and found.variant == "docker"
    assert found.abi_versions == ["0.2.1"]  # from the image config's labels, which podman kept
    got = pull(registry_client, ref(registry, "docker/converted:v1"), Store(tmp_path / "store"), MAX)
    assert got.variant == "docker" and got.module == module


def test_pull_detects_a_corrupted_blob_and_keeps_nothing(tmp_path: Path) -> None:
    service = start_registry(tmp_path / "registry")
    try:
        registry_client = client(service, tmp_path)
        module = module_bytes(padding=4000)
        push(registry_client, ref(service, "corrupt/add-header:v1"), built("oci", module))
        layer = image.Blob(image.CONTENT_MEDIA_TYPE, module).digest
        data = tmp_path / "registry/data/docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
        spoiled = bytearray(data.read_bytes())
        spoiled[-1] ^= 0xFF  # same size, different content
        data.write_bytes(bytes(spoiled))
        store = Store(tmp_path / "store")
        with pytest.raises(Corrupt) as caught:
            pull(registry_client, ref(service, "corrupt/add-header:v1"), store, MAX)
        assert f"blob {layer} from registry {host_of(service)} (corrupt/add-header) is corrupted" in str(caught.value)
        assert not store.has(layer)
        assert [p.name for p in (store.root / "blobs/sha256").iterdir() if p.name.startswith(".partial")] == []
    finally:
        service.stop()


def test_missing_repository_says_so(registry: Service, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        inspect(client(registry, tmp_path), ref(registry, "nobody/pushed-this:v1"))
    assert str(caught.value) == (
        f"registry {host_of(registry)} has no repository 'nobody/pushed-this': check the name, "
        "or push an image there first")
    registry_client = client(registry, tmp_path)
    push(registry_client, ref(registry, "somebody/pushed-this:v1"), built())
    with pytest.raises(NotFound) as caught:
        inspect(registry_client, ref(registry, "somebody/pushed-this:v9"))
    assert str(caught.value) == (
        f"registry {host_of(registry)} has no 'v9' in somebody/pushed-this (its tags: v1)")


def test_registry_answering_503_twice_then_201_gets_the_push(registry: Service, tmp_path: Path) -> None:
    proxy = FaultyProxy(registry.url, failures=2, method="PUT", path=r"/blobs/uploads/", retry_after="3")
    url = proxy.start()
    try:
        waits: list[float] = []
        via_proxy = Service("proxy", registry.process, url, registry.log)
        pushed = push(client(via_proxy, tmp_path, waits=waits), ref(via_proxy, "flaky/add-header:v1"), built())
        assert proxy.injected == 2 and waits == [3.0, 3.0]  # Retry-After honoured, no real sleeping
        assert pushed.uploaded == 2
        assert sum(line.startswith("PUT") and "/blobs/uploads/" in line for line in proxy.seen) == 4
        assert inspect(client(registry, tmp_path), ref(registry, "flaky/add-header:v1")).digest == pushed.digest
    finally:
        proxy.stop()


def test_a_registry_that_keeps_failing_is_reported_after_the_retries(registry: Service, tmp_path: Path) -> None:
    proxy = FaultyProxy(registry.url, failures=100, method="GET", path=r"/manifests/", status=429)
    url = proxy.start()
    try:
        waits: list[float] = []
        via_proxy = Service("proxy", registry.process, url, registry.log)
        with pytest.raises(RegistryError) as caught:
            inspect(client(via_proxy, tmp_path, waits=waits), ref(via_proxy, "busy/add-header:v1"))
        assert "kept answering HTTP 429 while trying to find busy/add-header:v1 (4 attempts)" in str(caught.value)
        assert waits == [0.5, 1.0, 2.0]  # exponential backoff without Retry-After
    finally:
        proxy.stop()


def test_an_invalid_tag_is_refused_before_any_request(registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    proxy = FaultyProxy(registry.url, failures=0)
    url = proxy.start()
    try:
        host = url.split("://")[1]
        module = tmp_path / "add-header.wasm"
        module.write_bytes(module_bytes())
        for args in (["push", str(module), f"{host}/bad/tag:-no"], ["tag", f"{host}/bad/tag:v1", "not/allowed"],
                     ["pull", f"{host}/Bad/Name:v1"], ["inspect", f"{host}/bad/tag:a+b"]):
            proc = wasmbot_cli(*args)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.startswith("wasmbot: invalid "), proc.stderr
        assert proxy.seen == []
    finally:
        proxy.stop()
    with pytest.raises(reference.InvalidReference, match="invalid tag 'v1 ; rm'"):
        reference.parse("localhost:5000/x:v1 ; rm")


def test_search_uses_the_catalog_and_lists_tags(tmp_path: Path, wasmbot_cli) -> None:
    registry = start_registry(tmp_path / "registry")  # its own: the catalog is the whole registry
    try:
        _search(registry, tmp_path, wasmbot_cli)
    finally:
        registry.stop()


def _search(registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    registry_client = client(registry, tmp_path)
    for name in ("team-a/add-header:v1", "team-a/add-header:v2", "team-b/add-header-v2:1.0", "team-b/rate-limit:v1"):
        push(registry_client, ref(registry, name), built())
    found = {f.repository: f.tags for f in search(registry_client, "add-header")}
    assert found == {"team-a/add-header": ["v1", "v2"], "team-b/add-header-v2": ["1.0"]}
    proc = wasmbot_cli("run", f"/wasm search {host_of(registry)}/rate-limit")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{host_of(registry)}/team-b/rate-limit: v1"


def test_cli_push_pull_inspect_round_trip(registry: Service, tmp_path: Path, wasmbot_cli, filter_module) -> None:
    host = host_of(registry)
    module = filter_module("c")
    pushed = wasmbot_cli("push", str(module), f"{host}/cli/add-header:v1", "--root-id", "add-header")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"pushed {host}/cli/add-header:v1@sha256:")
    assert "(compat variant, 2 blob(s) uploaded, 0 already there)" in pushed.stdout
    out = tmp_path / "pulled.wasm"
    pulled = wasmbot_cli("pull", f"{host}/cli/add-header:v1", "-o", str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert out.read_bytes() == module.read_bytes()
    shown = wasmbot_cli("inspect", f"{host}/cli/add-header:v1", "--json")
    data = json.loads(shown.stdout)
    assert data["variant"] == "compat" and data["abi_versions"] == ["0.2.1"] and data["root_ids"] == ["add-header"]
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0garbage")
    refused = wasmbot_cli("push", str(broken), f"{host}/cli/broken:v1")
    assert refused.returncode == 2 and "is not a valid WebAssembly module" in refused.stderr
    assert log_lines(registry, r"/v2/cli/broken/") == []


def test_bundled_schemas_are_the_published_ones() -> None:
    bundled = ROOT / "workers/oci/schemas"
    for path in bundled.glob("*.json"):
        assert path.read_bytes() == (ROOT / "tests/testdata/oci" / path.name).read_bytes()
    manifest = json.loads(built("compat").manifest())
    oci_validator().validate(manifest)
    from workers.oci import schema

    assert schema.problems(manifest) == []
    assert schema.problems({"schemaVersion": 2, "layers": "no"}) != []
