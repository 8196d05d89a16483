"""Push stage: publish the tested module in the variant its registry is configured for.

``compat`` (default) goes to TAG; ``oci`` (the solo.io variant) to TAG; ``both`` puts compat at
TAG and oci at TAG + ``oci_tag_suffix``.  Each manifest carries provenance annotations (source,
revision, created, title, version) and the ABI version and root ids.  The job records every
manifest digest: the value a WasmPlugin's ``sha256`` pins.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from workers.commands import BuildCommand, PushCommand, source_of
from workers.oci import image, reference
from workers.oci.connect import connect
from workers.oci.layercache import LayerCache
from workers.oci.push import Pushed, push, targets
from workers.oci.registry import RegistryError
from workers.stages import StageContext, StageError, StageSkipped, load
from workers.stages.build import source_dir


def run(ctx: StageContext) -> dict[str, str]:
    command = ctx.job.command
    text = command.tag if isinstance(command, BuildCommand | PushCommand) else None
    if not text:
        raise StageSkipped("no --tag given: nothing to push")
    try:
        ref = reference.parse(str(text))
        pushes = targets(ref, ctx.settings.variant_for(ref.registry), ctx.settings.oci_tag_suffix)
    except reference.InvalidReference as exc:
        raise StageError(str(exc)) from None
    build = ctx.job.stage("build").result
    runtime = image.Runtime([ctx.job.stage("test").result["abi_version"]], build["root_ids"].split(","))
    module = load(ctx, build["module"])
    annotations = provenance(ctx, pushes[0][1].tag or "")
    done: list[Pushed] = []
    layers = LayerCache(ctx.settings.data_dir)  # a re-push of the same module compresses nothing
    try:
        registry = connect(ctx.settings, ref.registry)
        scheme = "http" if registry.endpoint.plain_http else "https"
        for kind, target in pushes:
            ctx.log(f"pushing {target} ({kind} variant, {scheme})")
            built = image.build(kind, module, runtime, annotations, layers.compat_layer)
            pushed = push(registry, target, built, ctx.log)
            ctx.log(f"pushed {pushed.pinned}: {pushed.uploaded} blob(s) uploaded, "
                    f"{pushed.reused} already in the registry")
            done.append(pushed)
    except RegistryError as exc:
        raise StageError(f"{exc}{_partly(done)}") from None
    first = done[0]
    result = {"image": first.reference, "digest": first.digest, "variant": first.variant,
              "size": str(first.size), "uploaded": str(sum(p.uploaded for p in done))}
    for extra in done[1:]:
        result[f"{extra.variant}_image"], result[f"{extra.variant}_digest"] = extra.reference, extra.digest
    return result


def provenance(ctx: StageContext, version: str) -> dict[str, str]:
    """OCI annotations saying where the module came from: the source's git checkout."""
    try:
        folder = source_dir(ctx)
    except StageError:  # provenance is best effort: the source may be gone by now
        folder = Path(source_of(ctx.job.command) or "module")
    source = _git(folder, "remote", "get-url", "origin") or ""
    revision = _git(folder, "rev-parse", "HEAD") or ""
    committed = _git(folder, "log", "-1", "--format=%ct", revision) if revision else None
    created = float(committed) if committed and committed.isdigit() else time.time()
    found = {
        # The filter's name as the build found it declared (not a checkout directory's name).
        "org.opencontainers.image.title": ctx.job.stage("build").result.get("name") or folder.name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "org.opencontainers.image.source": _without_userinfo(source),
        "org.opencontainers.image.revision": revision,
        "io.wasmbot.job": ctx.job.id,
    }
    return {key: value for key, value in found.items() if value}


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _without_userinfo(url: str) -> str:
    """``https://user:token@host/x`` must not end up in a public annotation."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url)


def _partly(done: list[Pushed]) -> str:
    if not done:
        return ""
    return " (already pushed: " + ", ".join(p.pinned for p in done) + ")"
