"""Deploy stage: put a pushed module into an environment's mesh.

Resolves the image to its digest, checks its ABI against the environment's platform, builds
the resource, and applies it with server-side apply; a dry run sends the same apply with
``dryRun=All`` (the API server validates it and stores nothing) and logs the YAML.  After a
real apply the stored object is read back and compared with what was sent.
"""

from __future__ import annotations

import json

import yaml

from workers.deploy import istio
from workers.deploy.cluster import Cluster
from workers.deploy.target import DeployError, check_abi, resolve
from workers.oci.reference import InvalidReference
from workers.oci.registry import RegistryError
from workers.stages import StageContext, StageError


def run(ctx: StageContext) -> dict[str, str]:
    command = ctx.job.command
    env_name = str(command["env"])
    env = ctx.settings.environments.get(env_name)
    if env is None:
        known = ", ".join(sorted(ctx.settings.environments)) or "none are configured"
        raise StageError(f"no environment {env_name!r} (known: {known}); "
                         "see [environments] in docs/deploy.md")
    if env.platform != "istio":
        raise StageError(f"environment {env_name} is on {env.platform}; wasmbot deploys to Istio only so far")
    if env.protected and not command.get("dry_run"):
        raise StageError(f"environment {env_name} is protected: its deploys need an approval, which wasmbot "
                         "cannot collect yet; use --dry-run to see what would be applied")
    dry_run = bool(command.get("dry_run"))
    try:
        target = resolve(ctx.settings, str(command["target"]))
        check_abi(target, env_name, env)
        config = json.loads(command["config"]) if command.get("config") else None
        plugin = istio.wasm_plugin(target, env_name, env, root_id=command.get("root_id"), config=config,
                                   job=ctx.job.id, requester=ctx.job.requester)
        ctx.log(("dry run: this would be applied" if dry_run else "applying") + f" to {env_name}:\n"
                + yaml.safe_dump(plugin, sort_keys=False).rstrip())
        cluster = Cluster(env_name, env)
        # The client returns the object for 200 only; an apply that creates answers 201.
        stored = cluster.apply(plugin, istio.GROUP, istio.VERSION, istio.PLURAL, dry_run=dry_run) or {}
        if not dry_run:
            stored = cluster.get(istio.GROUP, istio.VERSION, istio.PLURAL, target.filter_name) or {}
            if stored.get("spec") != plugin["spec"]:
                raise DeployError(f"environment {env_name}: the cluster stored WasmPlugin "
                                  f"{target.filter_name} with another spec than was sent (an admission "
                                  "webhook may have changed it)")
    except (DeployError, RegistryError, InvalidReference) as exc:
        raise StageError(str(exc)) from None
    where = f"{env.namespace}/{target.filter_name}"
    done = "validated (dry run, nothing changed)" if dry_run else "deployed"
    ctx.log(f"{done}: WasmPlugin {where} pinned to {target.digest}")
    return {"environment": env_name, "resource": f"WasmPlugin {where}", "deployed_image": str(target.image),
            "deployed_digest": target.digest, "dry_run": str(dry_run).lower(),
            "generation": str(stored.get("metadata", {}).get("generation", ""))}
