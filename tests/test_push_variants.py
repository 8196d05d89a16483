"""The push stage: both image layouts pushed to a real registry and pulled back by an independent client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import requests
from conftest import registry_host
from test_pipeline import oci_validator

from workers import artifacts, sandbox
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.oci import image
from workers.stages import StageContext
from workers.stages import build as build_stage
from workers.stages import push as push_stage
from workers.store import open_store


def push_stage_run(module: Path, ref: str, settings: Settings, workdir: Path,
                   log: list[str] | None = None) -> dict[str, str]:
    build = Stage(name="build", state=State.SUCCEEDED, result={
        "root_ids": "add-header",
        "module_sha256": "sha256:" + hashlib.sha256(module.read_bytes()).hexdigest()}
        | build_stage.revision(module.parent))  # as the build found the source
    test = Stage(name="test", state=State.SUCCEEDED, result={"abi_version": "0.2.1"})
    job = Job(requester="t", origin="t", text="", source_root=str(module.parent.parent),
              command={"name": "build", "source": module.parent.name, "tag": ref}, stages=[build, test, Stage(name="push")])
    workdir.mkdir(parents=True, exist_ok=True)
    build.result["module"] = artifacts.put(settings, open_store(settings), job.id, "filter.wasm", module.read_bytes())
    ctx = StageContext(job=job, settings=settings, workdir=workdir,
                       log=(log.append if log is not None else lambda line: None))
    return push_stage.run(ctx)


def push(module: Path, ref: str, variant: str, workdir: Path) -> dict[str, str]:
    return push_stage_run(module, ref, Settings(data_dir=workdir / "data", push_variant=variant), workdir)


def manifest(host: str, repository: str, digest: str) -> dict[str, object]:
    resp = requests.get(f"http://{host}/v2/{repository}/manifests/{digest}", timeout=10,
                        headers={"Accept": image.MANIFEST_MEDIA_TYPE})
    resp.raise_for_status()
    data: dict[str, object] = resp.json()
    return data


def test_compat_image_is_pulled_by_podman_with_the_module_intact(registry, filter_module, tmp_path: Path) -> None:
    module = filter_module("c")
    host = registry_host(registry)
    ref = f"{host}/compat/add-header:v1"
    result = push(module, ref, "compat", tmp_path / "w")
    m = manifest(host, "compat/add-header", result["digest"])
    oci_validator().validate(m)
    assert m["config"]["mediaType"] == image.OCI_CONFIG_MEDIA_TYPE  # type: ignore[index]
    assert [layer["mediaType"] for layer in m["layers"]] == [image.TAR_GZIP_MEDIA_TYPE]  # type: ignore[union-attr]
    annotations = m["annotations"]
    assert annotations["module.wasm.image/variant"] == "compat"  # type: ignore[index]
    # Provenance: the source is a directory of this git checkout, so its commit is recorded.
    revision = sandbox.subprocess.run(["git", "-C", str(module.parent), "rev-parse", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
    assert annotations["org.opencontainers.image.revision"] == revision  # type: ignore[index]
    assert annotations["org.opencontainers.image.created"].endswith("Z")  # type: ignore[index]
    pulled = sandbox.podman("pull", "--tls-verify=false", ref, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    name = f"wasmbot-test-{tmp_path.name[-12:].lower()}"
    try:
        assert sandbox.podman("create", "--name", name, ref, "/plugin.wasm").returncode == 0
        out = tmp_path / "plugin.wasm"
        copied = sandbox.podman("cp", f"{name}:/plugin.wasm", str(out))
        assert copied.returncode == 0, copied.stderr
        assert out.read_bytes() == module.read_bytes()
    finally:
        sandbox.podman("rm", "--force", name)
        sandbox.podman("rmi", "--force", ref)


def test_oci_variant_has_exactly_two_layers_of_the_spec(registry, filter_module, tmp_path: Path) -> None:
    module = filter_module("c")
    host = registry_host(registry)
    result = push(module, f"{host}/solo/add-header:v1", "oci", tmp_path / "w")
    m = manifest(host, "solo/add-header", result["digest"])
    oci_validator().validate(m)
    assert m["config"]["mediaType"] == image.CONFIG_MEDIA_TYPE  # type: ignore[index]
    layers = m["layers"]
    assert [layer["mediaType"] for layer in layers] == [image.CONFIG_MEDIA_TYPE, image.CONTENT_MEDIA_TYPE]  # type: ignore[union-attr]
    assert layers[1]["digest"] == "sha256:" + hashlib.sha256(module.read_bytes()).hexdigest()  # type: ignore[index]
    config = requests.get(f"http://{host}/v2/solo/add-header/blobs/{m['config']['digest']}", timeout=10)  # type: ignore[index]
    assert json.loads(config.content) == {"type": "envoy_proxy", "abiVersions": ["0.2.1"],
                                          "config": {"rootIds": ["add-header"]}}


def test_compat_layer_is_the_same_for_the_same_module(filter_module) -> None:
    module = filter_module("c").read_bytes()
    runtime = image.Runtime(["0.2.1"], ["x"])
    a, b = image.build("compat", module, runtime, {}), image.build("compat", module, runtime, {})
    assert a.layers[0].data == b.layers[0].data and a.config.data == b.config.data
    assert a.manifest() == b.manifest()


def test_source_url_credentials_never_reach_an_annotation(tmp_path: Path) -> None:
    """The build reads the source's remote for the image's provenance, without its credentials."""
    for git in (["init", "-q"], ["remote", "add", "origin", "https://bot:ghp_secret@github.com/acme/f.git"],
                ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"]):
        sandbox.subprocess.run(["git", "-C", str(tmp_path), *git], check=True)
    found = build_stage.revision(tmp_path)
    assert found["source_url"] == "https://github.com/acme/f.git" and len(found["revision"]) == 40
    assert found["committed"].isdigit()


def test_a_tag_with_a_digest_that_is_not_the_images_is_refused_before_any_upload(
        registry, tmp_path: Path) -> None:
    from ocihelp import log_lines, module_bytes

    from workers.stages import StageError

    module = tmp_path / "src" / "build" / "add-header.wasm"
    module.parent.mkdir(parents=True)
    module.write_bytes(module_bytes())
    wrong = "sha256:" + "0" * 64
    host = registry_host(registry)
    for ref in (f"{host}/stagedigest/a@{wrong}", f"{host}/stagedigest/a:v1@{wrong}"):
        try:
            push(module, ref, "compat", tmp_path / "w")
            raise AssertionError(f"{ref} was pushed")
        except StageError as exc:
            assert f"{ref} names another image: the compat image of this module is sha256:" in str(exc)
    assert log_lines(registry, r"/v2/stagedigest/") == []
