"""The module catalogue: every repository and tag in the default registry, read in the
background and kept in the job store, so a page never waits on the registry.

Reading 500 tags means a thousand requests or more, so pages render from the copy the store
keeps (the view ``hub-catalogue``, shared by every replica) and a copy older than
``hub_catalogue_refresh`` seconds is read again in the background, by one replica per period
(a store claim names the period).  A refresh is incremental: each tag's manifest digest is
asked for with one ``HEAD``, and only a tag whose digest changed has its manifest and config
read again (workers/oci/inspect.py).

Push time: registries do not say when a manifest was pushed, so an entry carries the image's
``org.opencontainers.image.created`` annotation (wasmbot's push stage writes it: the source's
commit time) and when the catalogue first saw that digest.  Signatures: wasmbot signs nothing;
an entry says whether a cosign signature (the ``sha256-HEX.sig`` tag cosign pushes beside an
image) is present.  It is not verified here: no keys are configured for that.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.config import Settings
from workers.oci.connect import connect
from workers.oci.image import UnsupportedImage
from workers.oci.inspect import inspect
from workers.oci.reference import Reference
from workers.oci.registry import Registry, RegistryError
from workers.store import open_store

VIEW = "hub-catalogue"
CREATED = "org.opencontainers.image.created"
JOB = "io.wasmbot.job"  # the wasmbot job that pushed it (workers/stages/push.py)
# Tags cosign pushes beside an image: its signature, attestations and SBOM, named by the digest.
_COSIGN = re.compile(r"^sha256-([0-9a-f]{64})\.(sig|att|sbom)$")


@dataclass
class Entry:
    """One tag of one repository, as the catalogue last read it."""

    repository: str
    tag: str
    digest: str = ""  # what the tag names now (HEAD); "" when the registry did not say
    resolved: str = ""  # the image pulled for it (an index's linux/amd64 entry), what to pin
    variant: str = ""
    abi_versions: list[str] = field(default_factory=list)
    root_ids: list[str] = field(default_factory=list)
    size: int = 0  # bytes a pull downloads
    created: str = ""  # the image's created annotation (RFC 3339), if any
    first_seen: float = 0.0  # when the catalogue first saw this digest under this tag
    signed: bool = False  # a cosign signature tag is present (not verified)
    job: str = ""  # the wasmbot job that pushed it
    error: str = ""  # why it is not a module wasmbot can deploy

    def matches(self, needle: str) -> bool:
        """Search: ``needle`` (lower case) in the repository, tag or a root id."""
        return (needle in self.repository.lower() or needle in self.tag.lower()
                or any(needle in root.lower() for root in self.root_ids))


@dataclass
class Catalogue:
    registry: str
    read_at: float = 0.0
    entries: list[Entry] = field(default_factory=list)
    error: str = ""  # why the last read failed (the entries are the read before it)

    def repositories(self) -> list[str]:
        return sorted({entry.repository for entry in self.entries})

    def search(self, query: str) -> list[Entry]:
        needle = query.strip().lower()
        return [entry for entry in self.entries if not needle or entry.matches(needle)]

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Catalogue:
        data: dict[str, Any] = json.loads(raw)
        entries = [Entry(**entry) for entry in data.pop("entries", [])]
        return cls(**data, entries=entries)


def read(registry: Registry, host: str, previous: Catalogue | None, now: float) -> Catalogue:
    """Read the registry's catalogue, reusing what ``previous`` knew of unchanged tags.  A
    repository that cannot be read keeps its previous entries, and the catalogue says so."""
    known = {(e.repository, e.tag): e for e in previous.entries} if previous else {}
    entries: list[Entry] = []
    problems: list[str] = []
    repositories = sorted(registry.catalog())
    for repository in repositories:
        try:
            entries += _repository(registry, host, repository, known, now)
        except RegistryError as exc:
            problems.append(str(exc))
            entries += [entry for (name, _), entry in known.items() if name == repository]
    error = (f"{len(problems)} of {len(repositories)} repositories could not be read (shown as last read); "
             f"the first: {problems[0]}") if problems else ""
    return Catalogue(host, now, entries, error)


def _repository(registry: Registry, host: str, repository: str, known: dict[tuple[str, str], Entry],
                now: float) -> list[Entry]:
    tags = registry.tags(repository)
    signatures = {m.group(1) for m in map(_COSIGN.match, tags) if m and m.group(2) == "sig"}
    entries = []
    for tag in sorted(t for t in tags if not _COSIGN.match(t)):
        digest = registry.manifest_digest(repository, tag)
        old = known.get((repository, tag))
        entry = old if old is not None and digest and old.digest == digest else \
            _inspect(registry, host, repository, tag, digest, now)
        entry.signed = bool({entry.digest, entry.resolved} & {f"sha256:{s}" for s in signatures})
        entries.append(entry)
    return entries


def _inspect(registry: Registry, host: str, repository: str, tag: str, digest: str, now: float) -> Entry:
    entry = Entry(repository, tag, digest=digest, first_seen=now)
    try:
        found = inspect(registry, Reference(host, repository, tag))
    except (UnsupportedImage, RegistryError) as exc:
        entry.error = str(exc)
        return entry
    entry.digest = digest or found.digest
    entry.resolved, entry.variant = found.digest, found.variant
    entry.abi_versions, entry.root_ids, entry.size = found.abi_versions, found.root_ids, found.size
    entry.created = found.annotations.get(CREATED, "")
    entry.job = found.annotations.get(JOB, "")
    return entry


def load(settings: Settings) -> Catalogue | None:
    """The catalogue as the store keeps it (None: never read, or another registry's)."""
    raw = open_store(settings).view(VIEW)
    if raw is None:
        return None
    found = Catalogue.loads(raw)
    return found if found.registry == settings.default_registry else None


def refresh(settings: Settings) -> Catalogue:
    """Read the default registry now and keep the result; a failed read keeps the entries
    of the last good one, with the error."""
    host = settings.default_registry
    if not host:
        raise RegistryError("no default_registry is configured: the hub has no registry to list")
    previous = load(settings)
    now = time.time()
    try:
        found = read(connect(settings, host), host, previous, now)
    except RegistryError as exc:
        found = previous or Catalogue(host)
        found.read_at, found.error = now, str(exc)
    open_store(settings).save_view(VIEW, found.dumps())
    return found


_running: dict[str, asyncio.Task[Catalogue]] = {}
_OWNER = uuid.uuid4().hex  # this process, in the refresh claim


async def current(settings: Settings, wait: float = 5.0) -> Catalogue | None:
    """The catalogue for a page: the kept one, refreshed in the background once it is older
    than ``hub_catalogue_refresh``.  Only when none was ever read does the page wait for the
    first read, at most ``wait`` seconds (None: still reading)."""
    found = await asyncio.to_thread(load, settings)
    now = time.time()
    if found is not None and now - found.read_at < settings.hub_catalogue_refresh:
        return found
    task = _running.get(str(settings.default_registry))
    if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
        period = int(now // settings.hub_catalogue_refresh)
        store = open_store(settings)
        claim = f"hub-catalogue:{settings.default_registry}:{period}"
        if await store.claim_key_async(claim, _OWNER, 2 * settings.hub_catalogue_refresh) != _OWNER \
                and found is not None:
            return found  # another replica reads it this period
        task = asyncio.create_task(asyncio.to_thread(refresh, settings))
        _running[str(settings.default_registry)] = task
    if found is not None:
        return found
    done, _ = await asyncio.wait({task}, timeout=wait)
    return task.result() if done else None
