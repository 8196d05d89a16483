"""Gloo Edge: the filter as an entry of ``spec.httpGateway.options.wasm.filters[]`` in each
selected ``Gateway`` (gateway.solo.io/v1), everything else in the Gateway left as it was.

The Gateway is not wasmbot's, so the entries it added are named in its ``wasmbot.io/filters``
annotation: an entry of the same name that someone else added is refused unless adopted, and
an adopted one is put back as it was on undeploy.

Another controller (or person) may write the same Gateway, so each change is read, modified,
and server-side applied (wasmbot's part only, ``wasmbots_part``) with the read's
``resourceVersion``; a 409 means someone was faster, and the change is made again on a fresh
read.  Gloo pulls the solo.io image layout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from workers.config import Environment
from workers.deploy.cluster import Cluster, Conflict
from workers.deploy.target import DeployError, Target

GROUP, VERSION, PLURAL = "gateway.solo.io", "v1", "gateways"
MAX_CONFLICTS = 5


def filter_entry(target: Target, env: Environment, *, root_id: str | None, config: Any) -> dict[str, Any]:
    if target.variant != "oci":
        raise DeployError(
            f"{target.image} is in the {target.variant} layout, but Gloo pulls the solo.io layout: "
            'push with variant "oci" or "both" and deploy that image (TAG-oci for both)'
        )
    entry: dict[str, Any] = {
        "name": target.filter_name,
        "image": f"{target.image.registry}/{target.image.repository}@{target.digest}",
        "rootId": root_id or (target.root_ids[0] if target.root_ids else target.filter_name),
        "vmType": "V8",
        "filterStage": {"stage": env.gloo_stage, "predicate": env.gloo_predicate},
        "failOpen": env.fail_strategy == "FAIL_OPEN",
    }
    if config is not None:
        entry["config"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(config),
        }
    return entry


FILTERS = "wasmbot.io/filters"  # on a Gateway: the filter entries wasmbot added (comma-separated)
ADOPTED = "wasmbot.io/adopted-filters"  # entries it took over, as they were (JSON by name)


def _annotations(gateway: dict[str, Any]) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    annotations = gateway["metadata"].setdefault("annotations", {})
    ours = [n for n in annotations.get(FILTERS, "").split(",") if n]
    return annotations, ours, json.loads(annotations.get(ADOPTED, "{}"))


def _store_annotations(annotations: dict[str, str], ours: list[str], adopted: dict[str, Any]) -> None:
    adopted_text = json.dumps(adopted, sort_keys=True) if adopted else ""
    for key, value in ((FILTERS, ",".join(ours)), (ADOPTED, adopted_text)):
        if value:
            annotations[key] = value
        else:
            annotations.pop(key, None)


def with_filter(gateway: dict[str, Any], entry: dict[str, Any], *, adopt: bool = False) -> dict[str, Any]:
    """The Gateway with ``entry`` added, or replacing the filter of the same name if wasmbot
    added that one (``adopt``: even if it did not; undeploy then puts the original back)."""
    changed = copy.deepcopy(gateway)
    options = changed["spec"]["httpGateway"].setdefault("options", {})
    filters = options.setdefault("wasm", {}).setdefault("filters", [])
    names = [f.get("name") for f in filters]
    annotations, ours, adopted = _annotations(changed)
    name = entry["name"]
    if name in names and name not in ours:
        if not adopt:
            raise DeployError(
                f"Gateway {gateway['metadata']['name']} holds a filter {name} that wasmbot did not add; "
                "nothing was changed. Deploy with --adopt to take it over (undeploy then puts it back as "
                "it was), or deploy under another name"
            )
        adopted[name] = filters[names.index(name)]
    if name in names:
        filters[names.index(name)] = entry
    else:
        filters.append(entry)
    _store_annotations(annotations, [*ours, name] if name not in ours else ours, adopted)
    return changed


def without_filter(gateway: dict[str, Any], name: str) -> dict[str, Any]:
    """The Gateway without wasmbot's filter ``name``, or with the one it adopted put back."""
    changed = copy.deepcopy(gateway)
    wasm = changed["spec"]["httpGateway"].get("options", {}).get("wasm", {})
    annotations, ours, adopted = _annotations(changed)
    names = [f.get("name") for f in wasm.get("filters", [])]
    if name in names and name not in ours:
        raise DeployError(f"Gateway {gateway['metadata']['name']} holds a filter {name} that wasmbot did not "
                          "add; it is left alone")
    if name in adopted:
        wasm["filters"][names.index(name)] = adopted.pop(name)
    else:
        wasm["filters"] = [f for f in wasm.get("filters", []) if f.get("name") != name]
    _store_annotations(annotations, [n for n in ours if n != name], adopted)
    if not annotations:
        del changed["metadata"]["annotations"]
    return changed


def update(
    cluster: Cluster,
    env_name: str,
    env: Environment,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    dry_run: bool,
) -> list[dict[str, Any]]:
    """Apply ``change`` to every selected Gateway, retrying on conflicts; return what was stored."""
    if not env.gateways:
        raise DeployError(f'environment {env_name} names no Gloo gateways (gateways = ["gateway-proxy"])')
    stored = []
    for name in env.gateways:
        for _ in range(MAX_CONFLICTS):
            current = cluster.get(GROUP, VERSION, PLURAL, name)
            if current is None:
                raise DeployError(
                    f"environment {env_name}: there is no Gateway {name} in namespace {env.namespace}"
                )
            if "httpGateway" not in current.get("spec", {}):
                raise DeployError(
                    f"environment {env_name}: Gateway {name} is not an HTTP gateway; WASM filters "
                    "go on spec.httpGateway"
                )
            try:
                stored.append(cluster.apply(wasmbots_part(change(current)), GROUP, VERSION, PLURAL,
                                            dry_run=dry_run, force=True) or {})
                break
            except Conflict:  # the Gateway changed since it was read: read it again
                continue
        else:
            raise DeployError(
                f"environment {env_name}: Gateway {name} kept changing under wasmbot "
                f"({MAX_CONFLICTS} conflicts in a row); retry the job"
            )
    return stored


def wasmbots_part(gateway: dict[str, Any]) -> dict[str, Any]:
    """What wasmbot applies to a Gateway: its filter list and its annotations, nothing else.

    The CRD declares ``filters`` an atomic list, so whoever applies it owns all of it: wasmbot
    sends the whole list as read (others' entries included) with ``force``, and the read's
    ``resourceVersion`` as a precondition, so a list changed since is a 409 and read again."""
    meta = gateway["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "resourceVersion": meta["resourceVersion"],
                         "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                         if k in (FILTERS, ADOPTED)}},
            "spec": {"httpGateway": {"options": {"wasm": {"filters": filters_of(gateway)}}}}}


def filters_of(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        gateway["spec"]["httpGateway"].get("options", {}).get("wasm", {}).get("filters", [])
    )
    return found
