"""Deploy stage: put a pushed module into an environment, or take it out again.

``deploy`` (and ``rollback``, which deploys the digest deployed before the current one):
resolve the image to its digest, check its ABI against the environment's platform, then
- Istio: server-side apply a ``WasmPlugin`` (workers/deploy/istio.py) and read it back;
- Gloo: add or replace the filter in each selected ``Gateway`` (workers/deploy/gloo.py).
``--dry-run`` sends the same writes with ``dryRun=All``: the API server validates them and
stores nothing; the log shows the YAML.  ``undeploy`` removes the WasmPlugin or the Gloo
filter entry, and nothing else.  Each change is recorded in the store's deploy history
(environment, filter, digest, job, requester, approver, time): ``/wasm history`` shows it and
rollback deploys the record before the current one again: its digest,
root id and plugin config.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from workers.commands import DeployCommand, RollbackCommand, UndeployCommand
from workers.config import Environment, Settings
from workers.deploy import envoy, gloo, istio
from workers.deploy.cluster import FIELD_MANAGER, Cluster, differing, unmanaged
from workers.deploy.target import DeployError, Target, check_abi, resolve
from workers.oci.reference import InvalidReference
from workers.oci.registry import RegistryError
from workers.stages import StageContext, StageError
from workers.store import open_store

EnvironmentCommand = DeployCommand | RollbackCommand | UndeployCommand


class Applied(NamedTuple):
    where: str  # what was changed, for people
    generation: str
    intent: dict[str, Any]  # what was applied (the WasmPlugin spec, the Gloo entry): history keeps it


def _command(ctx: StageContext) -> EnvironmentCommand:
    command = ctx.job.command
    if not isinstance(command, EnvironmentCommand):
        raise StageError(f"a {command.name} job has no environment to change")
    return command


def _environment(ctx: StageContext) -> tuple[str, Environment]:
    env_name = _command(ctx).env
    env = ctx.settings.environments.get(env_name)
    if env is None and env_name == "envoy":
        env = Environment(platform="envoy")  # always there: a local Envoy needs no configuration
    if env is None:
        known = ", ".join(sorted(ctx.settings.environments)) or "none are configured"
        raise StageError(
            f"no environment {env_name!r} (known: {known}); see [environments] in docs/deploy.md"
        )
    return env_name, env


def run(ctx: StageContext) -> dict[str, str]:
    command = _command(ctx)
    env_name, env = _environment(ctx)
    deploy = command if isinstance(command, DeployCommand) else None
    dry_run = deploy is not None and deploy.dry_run
    approval = ctx.job.approval
    if env.protected and not dry_run and not approval.get("approved_by"):
        raise StageError(f"environment {env_name} is protected: this change needs an approval first")
    try:
        restore: dict[str, Any] | None = None
        if deploy:
            text, root_id, config_text = deploy.target, deploy.root_id, deploy.config
        else:  # rollback: the whole intent deployed before, not only its digest
            before = previous(ctx, env_name)
            text = f"{before['image'].split('@')[0]}@{before['digest']}"
            root_id, config_text = before.get("root_id") or None, before.get("config") or None
            restore = json.loads(before["intent"]) if before.get("intent") else None
        target = resolve(ctx.settings, text)
        if approval.get("digest") and approval["digest"] != target.digest:
            raise DeployError(
                f"{text} is now {target.digest}, not the {approval['digest']} that "
                f"{approval.get('approved_by')} approved: nothing was deployed; ask again"
            )
        check_abi(target, env_name, env)
        config = json.loads(config_text) if config_text else None
        if env.platform == "envoy":
            applied = _envoy(ctx, target, env, root_id, config)
        elif env.platform == "istio":
            applied = _istio(ctx, Cluster(env_name, env), target, env_name, env, root_id, config,
                             dry_run, adopt=bool(deploy and deploy.adopt),
                             force=bool(deploy and (deploy.force or deploy.adopt)), restore=restore)
        else:
            applied = _gloo(ctx, Cluster(env_name, env), target, env_name, env, root_id, config,
                            dry_run, adopt=bool(deploy and deploy.adopt), restore=restore)
    except (DeployError, RegistryError, InvalidReference) as exc:
        raise StageError(str(exc)) from None
    where, generation = applied.where, applied.generation
    done = "validated (dry run, nothing changed)" if dry_run else "deployed"
    ctx.log(f"{done}: {where} pinned to {target.digest}")
    if not dry_run:
        _record(ctx, command.name, env_name, target.filter_name, image=str(target.image),
                digest=target.digest, resource=where, root_id=root_id or "", config=config_text or "",
                intent=json.dumps(applied.intent, sort_keys=True))
    return {
        "environment": env_name,
        "filter": target.filter_name,
        "resource": where,
        "deployed_image": str(target.image),
        "deployed_digest": target.digest,
        "dry_run": str(dry_run).lower(),
        "generation": generation,
    }


def _show(ctx: StageContext, env_name: str, dry_run: bool, objects: list[dict[str, Any]]) -> None:
    verb = "dry run: this would be applied" if dry_run else "applying"
    ctx.log(f"{verb} to {env_name}:\n" + yaml.safe_dump_all(objects, sort_keys=False).rstrip())


def _envoy(ctx: StageContext, target: Target, env: Environment, root_id: str | None,
           config: Any) -> Applied:
    """Pull the module and write envoy.yaml (a bootstrap) and envoy-filter.yaml (the filter alone)."""
    from workers.oci.connect import connect
    from workers.oci.pull import pull
    from workers.oci.store import Store

    pulled = pull(
        connect(ctx.settings, target.image.registry),
        target.image,
        Store(ctx.settings.data_dir / "oci"),
        ctx.settings.test_max_module_mb << 20,
    )
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    module = ctx.workdir / "plugin.wasm"
    module.write_bytes(pulled.module)
    wasm = envoy.wasm_filter(target, env, module, root_id=root_id, config=config)
    (ctx.workdir / "envoy-filter.yaml").write_text(yaml.safe_dump(wasm, sort_keys=False))
    bootstrap = ctx.workdir / "envoy.yaml"
    bootstrap.write_text(yaml.safe_dump(envoy.bootstrap(wasm), sort_keys=False))
    ctx.log(
        f"wrote {bootstrap} (run: envoy -c {bootstrap}; then curl -i localhost:10000/) and the filter "
        f"alone in {ctx.workdir / 'envoy-filter.yaml'}; module {module} ({pulled.module_digest})"
    )
    return Applied(f"Envoy bootstrap {bootstrap}", "", wasm)


def _istio(
    ctx: StageContext,
    cluster: Cluster,
    target: Target,
    env_name: str,
    env: Environment,
    root_id: str | None,
    config: Any,
    dry_run: bool,
    *,
    adopt: bool,
    force: bool,
    restore: dict[str, Any] | None = None,
) -> Applied:
    """``restore``: a rollback's recorded spec, applied as it was (phase, priority, selector
    included, even if the environment's defaults have changed since)."""
    current = cluster.get(istio.GROUP, istio.VERSION, istio.PLURAL, target.filter_name)
    plugin = istio.wasm_plugin(
        target,
        env_name,
        env,
        root_id=root_id,
        config=config,
        job=ctx.job.id,
        requester=ctx.job.requester,
        adopted=istio.adoption(current, env_name, adopt),  # refuses another's plugin before any write
    )
    if restore is not None:
        plugin["spec"] = restore
    _show(ctx, env_name, dry_run, [plugin])
    # The client returns the object for 200 only; an apply that creates answers 201.
    stored = cluster.apply(plugin, istio.GROUP, istio.VERSION, istio.PLURAL, dry_run=dry_run,
                           force=force) or {}
    if not dry_run:
        stored = cluster.get(istio.GROUP, istio.VERSION, istio.PLURAL, target.filter_name) or {}
        changed = differing(plugin["spec"], stored.get("spec", {}))
        if changed:  # only wasmbot's fields count: others may set theirs (kubectl edit, a controller)
            raise DeployError(
                f"environment {env_name}: the cluster stored WasmPlugin {target.filter_name} with other "
                f"values than were sent for {', '.join(changed)} (an admission webhook may have changed them)"
            )
        missing = unmanaged(plugin["spec"], stored, FIELD_MANAGER)
        if missing:  # success is what the server records as wasmbot's
            raise DeployError(
                f"environment {env_name}: the cluster does not record wasmbot as the manager of "
                f"{', '.join(missing)} in WasmPlugin {target.filter_name}"
            )
    return Applied(f"WasmPlugin {env.namespace}/{target.filter_name}",
                   str(stored.get("metadata", {}).get("generation", "")), plugin["spec"])


def _gloo(
    ctx: StageContext,
    cluster: Cluster,
    target: Target,
    env_name: str,
    env: Environment,
    root_id: str | None,
    config: Any,
    dry_run: bool,
    *,
    adopt: bool,
    restore: dict[str, Any] | None = None,
) -> Applied:
    entry = restore or gloo.filter_entry(target, env, root_id=root_id, config=config)
    _show(ctx, env_name, dry_run, [{"gateways": env.gateways, "filter": entry}])
    stored = gloo.update(
        cluster, env_name, env, lambda gateway: gloo.with_filter(gateway, entry, adopt=adopt), dry_run=dry_run
    )
    if not dry_run:
        for gateway in env.gateways:
            back = cluster.get(gloo.GROUP, gloo.VERSION, gloo.PLURAL, gateway) or {}
            if entry not in gloo.filters_of(back):
                raise DeployError(
                    f"environment {env_name}: Gateway {gateway} does not hold the filter after the update"
                )
    names = ", ".join(f"Gateway {env.namespace}/{g}" for g in env.gateways)
    return Applied(f"filter {target.filter_name} in {names}",
                   ",".join(str(s.get("metadata", {}).get("generation", "")) for s in stored), entry)


def preview(settings: Settings, command: DeployCommand, requester: str, job_id: str) -> tuple[Target, str]:
    """What a deploy would change, from a server-side dry run: for Istio the whole WasmPlugin
    when it is created, else a field-level diff of it; for Gloo a diff of the Gateways' wasm
    filters.  Shown to approvers before they approve."""
    env_name = command.env
    env = settings.environments[env_name]
    target = resolve(settings, command.target)
    check_abi(target, env_name, env)
    config = json.loads(command.config) if command.config else None
    before: list[Any] = []
    after: list[Any] = []
    headers = ("in the cluster now", "after this deploy")
    if env.platform == "envoy":  # no cluster: the deploy writes this filter config on the worker
        after = [envoy.wasm_filter(target, env, Path("plugin.wasm"), root_id=command.root_id, config=config)]
        headers = ("no Envoy config now", "after this deploy: the Envoy filter config is written")
    else:
        cluster = Cluster(env_name, env)
    if env.platform == "istio":
        current = cluster.get(istio.GROUP, istio.VERSION, istio.PLURAL, target.filter_name)
        plugin = istio.wasm_plugin(
            target,
            env_name,
            env,
            root_id=command.root_id,
            config=config,
            job=job_id,
            requester=requester,
            adopted=istio.adoption(current, env_name, command.adopt),
        )
        simulated = cluster.apply(plugin, istio.GROUP, istio.VERSION, istio.PLURAL, dry_run=True,
                                  force=command.force or command.adopt) or plugin
        where = f"WasmPlugin {env.namespace}/{target.filter_name}"
        before, after = ([_shown(current)] if current else []), [_shown(simulated)]
        headers = (("in the cluster now", "after this deploy") if current else
                   (f"in the cluster now: no {where}", f"after this deploy: {where} is created"))
    elif env.platform == "gloo":
        entry = gloo.filter_entry(target, env, root_id=command.root_id, config=config)
        # The deploy's own update, as a dry run: the same checks and errors (no such Gateway).
        def change(gateway: dict[str, Any]) -> dict[str, Any]:
            return gloo.with_filter(gateway, entry, adopt=command.adopt)
        dry_runs = gloo.update(cluster, env_name, env, change, dry_run=True)
        for name, changed in zip(env.gateways, dry_runs, strict=True):
            current = cluster.get(gloo.GROUP, gloo.VERSION, gloo.PLURAL, name)
            before.append({name: gloo.filters_of(current) if current else []})
            after.append({name: gloo.filters_of(changed)})
    lines = difflib.unified_diff(
        yaml.safe_dump_all(before, sort_keys=False).splitlines(),
        yaml.safe_dump_all(after, sort_keys=False).splitlines(),
        *headers,
        lineterm="",
    )
    return target, "\n".join(lines)


SERVER_SET = ("managedFields", "uid", "resourceVersion", "generation", "creationTimestamp")


def _shown(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as an approver reads it: what it is, where, and what it says (not the fields
    the server keeps for itself)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in SERVER_SET}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta,
            "spec": obj.get("spec", {})}


def _record(ctx: StageContext, action: str, env_name: str, name: str, **what: str) -> None:
    """Add this change to the environment's deploy history (who, when, approved by whom)."""
    job = ctx.job
    open_store(ctx.settings).record_deploy(
        {"action": action, "environment": env_name, "filter": name, "job": job.id,
         "requester": job.requester, "approver": str(job.approval.get("approved_by", "")),
         "at": str(time.time())} | what
    )


def previous(ctx: StageContext, env_name: str) -> dict[str, str]:
    """The deploy record before the current one: what a rollback deploys again."""
    command = _command(ctx)
    name = command.filter if isinstance(command, RollbackCommand) else None
    records = [r for r in open_store(ctx.settings).deploys(env_name) if name is None or r["filter"] == name]
    if not records:
        raise DeployError(f"nothing was deployed to {env_name}{' as ' + name if name else ''} by wasmbot yet")
    current = records[0]
    if name is None and len({r["filter"] for r in records}) > 1:
        raise DeployError(
            f"several filters are deployed to {env_name}; name one: /wasm rollback {env_name} FILTER"
        )
    if current["action"] == "undeploy":
        raise DeployError(
            f"{current['filter']} was undeployed from {env_name} by job {current['job']}: "
            "deploy it again with /wasm deploy IMAGE --env " + env_name
        )
    earlier = (r for r in records if r["action"] != "undeploy" and r["digest"] != current["digest"])
    before = next(earlier, None)
    if before is None:
        raise DeployError(
            f"{current['filter']} in {env_name} has only ever been deployed at "
            f"{current['digest']}: there is nothing to roll back to"
        )
    ctx.log(
        f"rolling {current['filter']} in {env_name} back from {current['digest']} to "
        f"{before['digest']} (deployed by job {before['job']})"
    )
    return before


def undeploy(ctx: StageContext) -> dict[str, str]:
    env_name, env = _environment(ctx)
    if env.protected and not ctx.job.approval.get("approved_by"):
        raise StageError(f"environment {env_name} is protected: this change needs an approval first")
    command = _command(ctx)
    assert isinstance(command, UndeployCommand)  # the undeploy stage runs undeploy jobs only
    name = command.filter
    try:
        cluster = Cluster(env_name, env)
        if env.platform == "istio":
            current = cluster.get(istio.GROUP, istio.VERSION, istio.PLURAL, name)
            if current is None:
                raise DeployError(f"there is no WasmPlugin {name} in {env_name} ({env.namespace})")
            if not istio.owned(current):
                raise DeployError(
                    f"WasmPlugin {name} in {env_name} was not deployed by wasmbot; it is left alone"
                )
            back = istio.handed_back(current)
            if back is None:
                cluster.delete(istio.GROUP, istio.VERSION, istio.PLURAL, name)
                where = f"WasmPlugin {env.namespace}/{name}"
            else:  # adopted: as it was before wasmbot took it over
                cluster.replace(back, istio.GROUP, istio.VERSION, istio.PLURAL)
                where = f"wasmbot's changes to WasmPlugin {env.namespace}/{name} (handed back as it was)"
        else:
            gloo.update(
                cluster, env_name, env, lambda gateway: gloo.without_filter(gateway, name), dry_run=False
            )
            where = f"filter {name} from " + ", ".join(f"Gateway {env.namespace}/{g}" for g in env.gateways)
    except DeployError as exc:
        raise StageError(str(exc)) from None
    ctx.log(f"removed {where}")
    _record(ctx, "undeploy", env_name, name, resource=where)
    return {"environment": env_name, "filter": name, "removed": where}
