"""The Istio ``WasmPlugin`` for a filter in an environment (extensions.istio.io/v1alpha1).

``url`` names the image by tag for people and ``sha256`` pins the manifest digest, which is what
Istio's agent compares; labels and annotations record where it came from and who asked.
"""

from __future__ import annotations

import json
from typing import Any

from workers.config import Environment
from workers.deploy.target import DeployError, Target

API_VERSION = "extensions.istio.io/v1alpha1"
GROUP, VERSION, PLURAL = "extensions.istio.io", "v1alpha1", "wasmplugins"
MANAGED_BY = {"app.kubernetes.io/managed-by": "wasmbot"}
ADOPTED = "wasmbot.io/adopted"  # on an adopted plugin: how it was before, to hand it back (JSON)


def owned(obj: dict[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in MANAGED_BY.items())


def adoption(current: dict[str, Any] | None, env_name: str, adopt: bool) -> str | None:
    """Before the first write: what the ``ADOPTED`` annotation holds (None: wasmbot's own or a
    new plugin).  A plugin wasmbot did not create is refused unless ``adopt``."""
    if current is None:
        return None
    meta = current["metadata"]
    if owned(current):
        found: str | None = (meta.get("annotations") or {}).get(ADOPTED)
        return found
    if not adopt:
        raise DeployError(
            f"WasmPlugin {meta['name']} in {env_name} was not created by wasmbot (it has no "
            "app.kubernetes.io/managed-by=wasmbot label); nothing was changed. Deploy with --adopt to "
            "take it over (undeploy then hands it back as it was), or deploy under another name"
        )
    return json.dumps({"spec": current.get("spec", {}), "labels": meta.get("labels") or {},
                       "annotations": meta.get("annotations") or {}}, sort_keys=True)


def handed_back(current: dict[str, Any]) -> dict[str, Any] | None:
    """An adopted plugin as it was before wasmbot took it over (None: wasmbot created it)."""
    meta = current["metadata"]
    before = (meta.get("annotations") or {}).get(ADOPTED)
    if before is None:
        return None
    was = json.loads(before)
    return {"apiVersion": API_VERSION, "kind": "WasmPlugin",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "resourceVersion": meta["resourceVersion"], "labels": was["labels"],
                         "annotations": was["annotations"]},
            "spec": was["spec"]}


def wasm_plugin(target: Target, env_name: str, env: Environment, *, root_id: str | None,
                config: Any, job: str, requester: str, adopted: str | None = None) -> dict[str, Any]:
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
    if adopted is not None:  # sent with every apply: a field wasmbot stops sending is removed
        annotations[ADOPTED] = adopted
    return {
        "apiVersion": API_VERSION, "kind": "WasmPlugin",
        "metadata": {"name": target.filter_name, "namespace": env.namespace,
                     "labels": MANAGED_BY | {"wasmbot.io/filter": target.filter_name,
                                             "wasmbot.io/environment": env_name},
                     "annotations": annotations},
        "spec": spec,
    }
