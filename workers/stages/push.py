"""Push stage: publish the tested module in the variant its registry is configured for.

``compat`` (default) goes to TAG; ``oci`` (the solo.io variant) to TAG; ``both`` puts compat at
TAG and oci at TAG + ``oci_tag_suffix``.  Each manifest carries provenance annotations (source,
revision, created, title, version) and the ABI version and root ids.  The job records every
manifest digest: the value a WasmPlugin's ``sha256`` pins.
"""

from __future__ import annotations

import time

from workers.commands import BuildCommand, PushCommand
from workers.oci import image, reference
from workers.oci.connect import connect
from workers.oci.layercache import LayerCache
from workers.oci.push import Pushed, push, targets
from workers.oci.registry import RegistryError
from workers.stages import StageContext, StageError, StageSkipped, load


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
    """OCI annotations saying where the module came from, as the build found its source."""
    build = ctx.job.stage("build").result
    committed = build.get("committed")
    created = float(committed) if committed else time.time()
    found = {
        # The filter's name as the build found it declared (not a checkout directory's name).
        "org.opencontainers.image.title": build.get("name") or "module",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "org.opencontainers.image.source": build.get("source_url", ""),
        "org.opencontainers.image.revision": build.get("revision", ""),
        "io.wasmbot.job": ctx.job.id,
    }
    return {key: value for key, value in found.items() if value}


def _partly(done: list[Pushed]) -> str:
    if not done:
        return ""
    return " (already pushed: " + ", ".join(p.pinned for p in done) + ")"
