"""A GitHub job's source on this worker: the fetch stage's archive, unpacked where this host keeps it.

The fetch stage keeps the repository's archive as an output (workers/artifacts.py) and unpacks
it; a later stage on another host unpacks the same archive into its own data directory first.
The checkout below ``artifacts_dir`` is this worker's cache of it, nothing more.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from workers import lease
from workers.config import Settings
from workers.jobs import Job
from workers.stages import StageContext, load

ARCHIVE = "source.tar.gz"


def fetched(job: Job) -> bool:
    return any(s.name == "fetch" for s in job.stages)


def local_root(settings: Settings, job_id: str) -> Path:
    return settings.artifacts_dir / job_id / "checkout"


def localize(job: Job, settings: Settings) -> Job:
    """``job`` with its source root on this worker, where it has a checkout of its own."""
    if fetched(job):
        job.source_root = str(local_root(settings, job.id))
    return job


def ensure(ctx: StageContext) -> None:
    """Unpack the fetched archive here, unless this worker already has (or there is none yet)."""
    ref = ctx.job.artifacts.get("checkout")
    root = Path(ctx.job.source_root)
    if not fetched(ctx.job) or not ref or root.is_dir():
        return
    unpack(load(ctx, ref), root)
    ctx.log(f"unpacked the checkout of {ctx.job.artifacts.get('commit', '')[:12]} on this worker")


def unpack(archive: bytes, root: Path) -> int:
    """Extract a GitHub archive (one top directory) as ``root``, whole or not at all; the number
    of files.  Unpacked beside it under the owner's name, so a killed worker's half goes in the
    startup sweep (workers/sweep.py)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"wasmbot-out-{lease.path_tag()}.", dir=root.parent))
    scratch.chmod(0o755)  # as a directory made anew: the build container's user reads the source
    try:
        count = 0
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts[1:]  # GitHub's archives have one top directory
                if not parts:
                    continue
                member.name = str(PurePosixPath(*parts))
                tar.extract(member, scratch, filter="data")  # refuses links out, devices, absolute paths
                count += member.isfile()
        shutil.rmtree(root, ignore_errors=True)  # a fetch run again replaces what it unpacked before
        with contextlib.suppress(OSError):  # another stage on this worker unpacked it first: as good
            scratch.rename(root)
        return count
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
