"""What to deploy: an image (by reference, or the job that pushed it), pinned to its digest."""

from __future__ import annotations

import re
from dataclasses import dataclass

from workers import platforms
from workers.config import Environment, Settings
from workers.oci import reference
from workers.oci.connect import connect
from workers.oci.inspect import inspect
from workers.store import open_store

_JOB_ID = re.compile(r"^[0-9a-f]{12}$")


class DeployError(Exception):
    """The deploy cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    image: reference.Reference  # with its tag when known, and always its digest
    digest: str
    abi_versions: list[str]
    root_ids: list[str]
    variant: str = "compat"
    source: str = ""
    revision: str = ""

    @property
    def filter_name(self) -> str:
        """The resource name: the repository's last part (a DNS label already)."""
        return self.image.repository.rsplit("/", 1)[-1].replace("_", "-").replace(".", "-")[:63]


def resolve(settings: Settings, text: str) -> Target:
    if _JOB_ID.match(text):
        job = open_store(settings).get(text)
        if job is None:
            raise DeployError(f"no job {text}")
        if not job.artifacts.get("digest"):
            raise DeployError(f"job {text} pushed no image (it is {job.state.value}); deploy an image "
                              "reference or a job that ran its push stage")
        text = f"{job.artifacts['image']}@{job.artifacts['digest']}"
    ref = reference.parse(text)
    found = inspect(connect(settings, ref.registry), ref)
    pinned = reference.Reference(ref.registry, ref.repository, ref.tag, found.digest)
    return Target(pinned, found.digest, found.abi_versions, found.root_ids, found.variant,
                  found.annotations.get("org.opencontainers.image.source", ""),
                  found.annotations.get("org.opencontainers.image.revision", ""))


def check_abi(target: Target, env_name: str, env: Environment) -> None:
    """Refuse a module the environment's proxies would not load, and say why."""
    try:
        release = platforms.release(env.platform, env.platform_version)
    except platforms.PlatformError as exc:
        raise DeployError(f"environment {env_name}: {exc}") from None
    if not target.abi_versions:
        raise DeployError(f"{target.image} records no ABI version, so wasmbot cannot check that "
                          f"{env.platform} {release.version} loads it; push it with wasmbot")
    if not set(target.abi_versions) & set(release.abi_versions):
        raise DeployError(
            f"{target.image} needs proxy-wasm ABI {', '.join(target.abi_versions)}, but {env.platform} "
            f"{release.version} (Envoy {release.envoy[0]}.{release.envoy[1]}) runs ABI "
            f"{', '.join(release.abi_versions)}: Envoy would refuse to load it")
