"""Push stage: publish the tested module with ``oras`` in the configured image variant.

``push_variant`` picks the layout (workers/oci/image.py): the solo.io "oci" variant (runtime
config plus the raw module, as wasme and WebAssembly Hub wrote them) or the "compat" variant
(one tar+gzip layer holding plugin.wasm).  After pushing, the manifest is read back by digest
and its layers checked against what was pushed.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import oras.client
import requests

from workers.oci import image
from workers.stages import StageContext, StageError, StageSkipped

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


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
    variant = ctx.settings.push_variant
    pushed = image.files(variant, module, image.runtime_config(abi, build["root_ids"].split(",")),
                         ctx.workdir)
    annotations = pushed.annotations | {
        "org.opencontainers.image.title": ctx.job.command["source"].rsplit("/", 1)[-1],
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "module.wasm.runtime/type": "envoy_proxy",
        "module.wasm.runtime/abi_version": abi,
        "io.wasmbot.job": ctx.job.id,
    }
    scheme = "http" if plain_http else "https"
    ctx.log(f"pushing {ref} ({scheme}, {variant} variant)")
    client = oras.client.OrasClient(hostname=registry, insecure=plain_http)
    client.session.request = _with_timeout(client.session.request, ctx.settings.push_timeout)
    try:
        # Ask the registry first: oras retries a refused connection for minutes, with backoff
        # meant for a busy registry, not for one that is not there.
        client.session.get(f"{scheme}://{registry}/v2/")
        response = client.push(
            target=f"{registry}/{repository}:{tag}",
            files=[f"{path}:{media_type}" for path, media_type in pushed.layers],
            manifest_config=f"{pushed.config[0]}:{pushed.config[1]}",
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
    expected = [(media_type, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest())
                for path, media_type in pushed.layers]
    if [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]] != expected:
        raise StageError(f"registry {registry} stored a manifest whose layers do not match "
                         f"what was pushed ({digest})")
    ctx.log(f"pushed {ref}@{digest}")
    return {"image": ref, "digest": digest, "variant": variant}


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
