"""Stage outputs that a later stage, or a front end, reads: kept where every host can reach them.

A job's stages may each run on a different worker, on a different host with its own data
directory (issue 22), so what one stage hands to the next never goes through a local path.
Each output is put under a name and the stage records the *reference* it gets back:

- ``oci:HOST/REPOSITORY/JOB@DIGEST``: a large output (the built module, a GitHub checkout)
  when ``artifact_registry`` is set: an image of one layer in the job's repository below the
  registry's scratch repository (``wasmbot-scratch`` unless named), pushed with the OCI client
  the push stage uses.  The store indexes it by when it is due; ``collect`` (each retention
  pass) deletes due manifests, and the registry's own garbage collection then frees the blobs.
- ``store:JOB/NAME``: a small output (test reports), and every output when no registry is
  configured (the single-host default), up to ``artifact_store_max_mb``, in the job store
  (Redis, or the embedded SQLite file), expiring on its own.

Every output lives ``artifact_ttl`` seconds: long enough for retries, ``/wasm push JOB`` and
the front ends' reports; past that a reader is told the output is gone and to build again.
"""

from __future__ import annotations

import io
import json
import logging
import time

from workers.config import Settings
from workers.oci import image, reference
from workers.oci.connect import connect
from workers.oci.push import push
from workers.oci.registry import NotFound, RegistryError
from workers.store import JobStore

log = logging.getLogger(__name__)
DEFAULT_REPOSITORY = "wasmbot-scratch"
LAYER_MEDIA_TYPE = "application/vnd.wasmbot.artifact.v1"
EMPTY_CONFIG = image.Blob("application/vnd.oci.empty.v1+json", b"{}")
READ_LIMIT = 1 << 30  # bytes of one output a reader accepts; writers have their own, smaller caps


class ArtifactError(Exception):
    """An output could not be kept or read; the message says why and what to do."""


class ArtifactMissing(ArtifactError):
    """The output is no longer kept."""


def scratch(settings: Settings) -> tuple[str, str] | None:
    """The scratch registry's host and repository, or None: outputs go to the job store."""
    if not settings.artifact_registry:
        return None
    host, _, repository = settings.artifact_registry.strip("/").partition("/")
    return host, repository or DEFAULT_REPOSITORY


def put(settings: Settings, store: JobStore, job_id: str, name: str, data: bytes, *,
        large: bool = False) -> str:
    """Keep ``data`` as ``job_id``'s output ``name``; return the reference a reader passes to ``get``.
    ``large``: the registry's scratch repository, when one is configured."""
    target = scratch(settings)
    if large and target is not None:
        return _push(settings, store, target, job_id, name, data)
    cap = settings.artifact_store_max_mb * 2**20
    if len(data) > cap:
        raise ArtifactError(f"{name} is {len(data)} bytes, more than the job store keeps "
                            f"(artifact_store_max_mb = {settings.artifact_store_max_mb}): set "
                            "artifact_registry to pass large outputs between workers through a registry")
    store.put_artifact(job_id, name, data, settings.artifact_ttl)
    return f"store:{job_id}/{name}"


def _push(settings: Settings, store: JobStore, target: tuple[str, str], job_id: str, name: str,
          data: bytes) -> str:
    host, repository = target
    try:
        ref = reference.parse(f"{host}/{repository}/{job_id}:{reference.check_tag(name)}")
        layer = image.Blob(LAYER_MEDIA_TYPE, data, {image.TITLE_ANNOTATION: name})
        pushed = push(connect(settings, host), ref, image.Image("artifact", EMPTY_CONFIG, [layer], {}))
    except (RegistryError, reference.InvalidReference) as exc:
        raise ArtifactError(f"cannot keep {name} in the scratch registry {host} (artifact_registry): "
                            f"{exc}") from None
    kept = f"oci:{ref.registry}/{ref.repository}@{pushed.digest}"
    store.add_scratch(kept, time.time() + settings.artifact_ttl)
    return kept


def get(settings: Settings, store: JobStore, ref: str, limit: int = READ_LIMIT) -> bytes:
    """The bytes ``ref`` names; ``ArtifactMissing`` once they are gone."""
    kind, _, where = ref.partition(":")
    if kind == "store":
        found = in_store(store, ref)
        if found is None:
            raise _missing(settings, where.partition("/")[2])
        return found
    if kind == "oci":
        return _pull(settings, where, limit)
    raise ArtifactError(f"{ref!r} is not an artifact reference (store:JOB/NAME or oci:REFERENCE); "
                        "the job was made by an older wasmbot: run it again")


def in_store(store: JobStore, ref: str) -> bytes | None:
    """A small output kept in the job store (what front ends read), None if gone or elsewhere."""
    kind, _, where = ref.partition(":")
    job_id, _, name = where.partition("/")
    return store.get_artifact(job_id, name) if kind == "store" else None


def _pull(settings: Settings, where: str, limit: int) -> bytes:
    ref = reference.parse(where)
    assert ref.digest is not None
    try:
        registry = connect(settings, ref.registry)
        manifest = json.loads(registry.get_manifest(ref.repository, ref.digest).raw)
        [layer] = manifest["layers"]
        buffer = io.BytesIO()
        registry.fetch_blob(ref.repository, layer["digest"], int(layer["size"]), buffer, limit)
    except NotFound:
        raise _missing(settings, f"output {ref.digest[:19]}") from None
    except RegistryError as exc:
        raise ArtifactError(f"cannot read a stage's output from the scratch registry: {exc}") from None
    return buffer.getvalue()


def _missing(settings: Settings, name: str) -> ArtifactMissing:
    return ArtifactMissing(f"this job's {name} expired or was removed (stage outputs are kept for "
                           f"artifact_ttl = {settings.artifact_ttl / 86400:g} days): run the job again")


def collect(settings: Settings, store: JobStore, now: float | None = None) -> int:
    """Delete the scratch manifests that are due; return how many went.  One that cannot be
    deleted now (the registry is down) stays indexed for the next pass."""
    removed = 0
    for kept in store.due_scratch(time.time() if now is None else now):
        ref = reference.parse(kept.removeprefix("oci:"))
        assert ref.digest is not None
        try:
            connect(settings, ref.registry).delete_manifest(ref.repository, ref.digest)
        except RegistryError as exc:
            log.warning("could not delete the scratch artifact %s: %s", kept, exc)
            continue
        store.drop_scratch(kept)
        removed += 1
    return removed
