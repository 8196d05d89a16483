"""Push stage: publish the tested module with ``oras`` in the solo.io "oci" image variant.

The image holds two layers, the runtime config and the module, and the same runtime config
as the manifest's config blob, as wasme and WebAssembly Hub wrote them and as Istio accepts.
After pushing, the manifest is read back by digest and its module layer checked against the
module that was built.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import oras.client
import requests

from workers.stages import StageContext, StageError, StageSkipped

CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def runtime_config(abi_version: str, root_ids: list[str]) -> dict[str, Any]:
    return {"type": "envoy_proxy", "abiVersions": [abi_version], "config": {"rootIds": root_ids}}


def split_reference(ref: str) -> tuple[str, str, str]:
    registry, rest = ref.split("/", 1)
    repository, _, tag = rest.partition(":")
    return registry, repository, tag or "latest"


def run(ctx: StageContext) -> dict[str, str]:
    ref = ctx.job.command.get("tag")
    if not ref:
        raise StageSkipped("no --tag given: nothing to push")
    build = ctx.job.stage("build").result
    abi = ctx.job.stage("test").result["abi_version"]
    registry, repository, tag = split_reference(ref)
    plain_http = ctx.settings.uses_plain_http(registry)
    module = Path(build["module"])
    config_path = ctx.workdir / "runtime-config.json"
    config_path.write_text(json.dumps(runtime_config(abi, build["root_ids"].split(","))))
    annotations = {
        "org.opencontainers.image.title": ctx.job.command["source"].rsplit("/", 1)[-1],
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "module.wasm.runtime/type": "envoy_proxy",
        "module.wasm.runtime/abi_version": abi,
        "io.wasmbot.job": ctx.job.id,
    }
    scheme = "http" if plain_http else "https"
    ctx.log(f"pushing {ref} ({scheme})")
    client = oras.client.OrasClient(hostname=registry, insecure=plain_http)
    client.session.request = _with_timeout(client.session.request, ctx.settings.push_timeout)
    try:
        # Ask the registry first: oras retries a refused connection for minutes, with backoff
        # meant for a busy registry, not for one that is not there.
        client.session.get(f"{scheme}://{registry}/v2/")
        response = client.push(
            target=f"{registry}/{repository}:{tag}",
            files=[f"{config_path}:{CONFIG_MEDIA_TYPE}", f"{module}:{CONTENT_MEDIA_TYPE}"],
            manifest_config=f"{config_path}:{CONFIG_MEDIA_TYPE}",
            manifest_annotations=annotations,
            disable_path_validation=True,  # layers are titled by their base names
            quiet=True,
        )
    except requests.ConnectionError:
        raise StageError(
            f"registry {registry} is unreachable over {scheme}: nothing was pushed. Check that "
            f"the registry is running and the --tag host is right, then retry the job") from None
    except requests.Timeout:
        raise StageError(f"registry {registry} did not answer within "
                         f"{ctx.settings.push_timeout:g}s; retry the job later") from None
    except (ValueError, requests.HTTPError) as exc:
        raise StageError(f"registry {registry} refused the push: {_short(exc)}") from None
    digest = response.headers.get("Docker-Content-Digest", "")
    manifest = _read_back(client, scheme, registry, repository, digest)
    layers = [layer for layer in manifest["layers"] if layer["mediaType"] == CONTENT_MEDIA_TYPE]
    if [layer["digest"] for layer in layers] != [build["module_sha256"]]:
        raise StageError(f"registry {registry} stored a manifest whose module layer does not "
                         f"match the build ({digest})")
    ctx.log(f"pushed {ref}@{digest}")
    return {"image": ref, "digest": digest}


def _read_back(client: Any, scheme: str, registry: str, repository: str,
               digest: str) -> dict[str, Any]:
    if not digest.startswith("sha256:"):
        raise StageError(f"registry {registry} returned no manifest digest")
    url = f"{scheme}://{registry}/v2/{repository}/manifests/{digest}"
    response = client.session.get(url, headers={"Accept": MANIFEST_MEDIA_TYPE})
    if response.status_code != 200:
        raise StageError(f"registry {registry} cannot serve the pushed manifest {digest}: "
                         f"HTTP {response.status_code}")
    manifest: dict[str, Any] = response.json()
    return manifest


def _with_timeout(request: Any, timeout: float) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)
    return timed


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "…"
