"""The Istio ``WasmPlugin`` for a filter in an environment (extensions.istio.io/v1alpha1).

``url`` names the image by tag for people and ``sha256`` pins the manifest digest, which is what
Istio's agent compares; labels and annotations record where it came from and who asked.
"""

from __future__ import annotations

from typing import Any

from workers.config import Environment
from workers.deploy.target import Target

API_VERSION = "extensions.istio.io/v1alpha1"
GROUP, VERSION, PLURAL = "extensions.istio.io", "v1alpha1", "wasmplugins"
MANAGED_BY = {"app.kubernetes.io/managed-by": "wasmbot"}


def wasm_plugin(target: Target, env_name: str, env: Environment, *, root_id: str | None,
                config: Any, job: str, requester: str) -> dict[str, Any]:
    image = target.image
    url = f"oci://{image.registry}/{image.repository}"
    url += f":{image.tag}" if image.tag else f"@{target.digest}"
    spec: dict[str, Any] = {"url": url, "sha256": target.digest.removeprefix("sha256:")}
    name = root_id or (target.root_ids[0] if target.root_ids else None)
    if name:
        spec["pluginName"] = name
    if config is not None:
        spec["pluginConfig"] = config
    if env.selector:
        spec["selector"] = {"matchLabels": dict(env.selector)}
    if env.target_refs:
        spec["targetRefs"] = [dict(ref) for ref in env.target_refs]
    for key, value in (("phase", env.phase), ("priority", env.priority), ("failStrategy", env.fail_strategy),
                       ("imagePullPolicy", env.pull_policy), ("imagePullSecret", env.pull_secret)):
        if value is not None:
            spec[key] = value
    annotations = {"wasmbot.io/image": str(image), "wasmbot.io/job": job, "wasmbot.io/requester": requester}
    if target.source:
        annotations["wasmbot.io/source"] = target.source
    if target.revision:
        annotations["wasmbot.io/revision"] = target.revision
    return {
        "apiVersion": API_VERSION, "kind": "WasmPlugin",
        "metadata": {"name": target.filter_name, "namespace": env.namespace,
                     "labels": MANAGED_BY | {"wasmbot.io/filter": target.filter_name,
                                             "wasmbot.io/environment": env_name},
                     "annotations": annotations},
        "spec": spec,
    }
