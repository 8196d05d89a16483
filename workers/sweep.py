"""At a worker's start, remove what a killed predecessor left behind.

A SIGKILLed worker leaves its build container running (until conmon's backstop), its captured
output or a half-unpacked checkout (``wasmbot-out-HOST@PID.*`` in a job's directory;
``/tmp/wasmbot-out-*`` from older versions) and half-filled cache entries (``.NAME@HOST@PID.*``,
``*.tmp``).  Each carries its owner's id, so only a dead owner's things go: another live
worker's build is left alone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

from workers import buildcache, lease, sandbox
from workers.config import Settings
from workers.store import JobStore

log = logging.getLogger(__name__)
OUT_PREFIX = "wasmbot-out-"
CACHES = ("builds", "deps", "layers")


def _owner(name: str, prefix: str) -> str:
    """The owner id in ``PREFIX HOST@PID.RANDOM[.wasm]`` (not an owner id when there is none)."""
    rest = name.removeprefix(prefix).removesuffix(".wasm")
    return lease.from_path_tag(rest.rpartition(".")[0])


def leftovers(settings: Settings, live: Collection[str]) -> Iterator[Path]:
    """Files and directories of dead owners."""
    yield from Path(tempfile.gettempdir()).glob(f"{OUT_PREFIX}*")  # no owner in the name: all old
    for path in settings.artifacts_dir.glob(f"*/{OUT_PREFIX}*"):
        if lease.gone(_owner(path.name, OUT_PREFIX), live):
            yield path
    for cache in CACHES:
        root = settings.data_dir / "cache" / cache
        yield from root.glob("*.tmp")
        for path in root.glob(".*@*"):
            if lease.gone(_owner(path.name.partition("@")[2], ""), live):
                yield path


def containers(engine: str, live: Collection[str]) -> list[str]:
    """Names of the wasmbot containers whose owner is dead."""
    listed = sandbox.engine_run(engine, "ps", "--all", "--filter", f"label={sandbox.OWNER_LABEL}",
                                "--format", "{{.Names}}")
    dead = []
    for name in listed.stdout.split():
        owner = sandbox.engine_run(engine, "container", "inspect", "--format",
                                   f'{{{{index .Config.Labels "{sandbox.OWNER_LABEL}"}}}}', name)
        if owner.returncode == 0 and lease.gone(owner.stdout.strip(), live):
            dead.append(name)
    return dead


def sweep(settings: Settings, store: JobStore) -> int:
    """Remove every dead owner's leftovers; return how many went."""
    live = store.live_workers()
    removed = 0
    for path in leftovers(settings, live):
        buildcache.remove(path)
        removed += 1
    try:
        for name in containers(settings.container_engine, live):
            sandbox.remove(name, settings.container_engine)
            removed += 1
    except sandbox.SandboxError:  # no engine on this worker: it has run no container either
        pass
    log.info("startup sweep: removed %d leftovers of killed workers", removed)
    return removed
