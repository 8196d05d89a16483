"""Find repositories and tags in a registry: the catalog API where offered, else one repository."""

from __future__ import annotations

from dataclasses import dataclass

from workers.oci.registry import AuthenticationFailed, Denied, NotFound, Registry, RegistryError


@dataclass
class Found:
    repository: str
    tags: list[str]


def search(registry: Registry, query: str, limit: int = 20) -> list[Found]:
    """Repositories whose name contains ``query`` (case-insensitive), with their tags."""
    try:
        repositories = registry.catalog()
    except (NotFound, Denied, AuthenticationFailed) as exc:
        raise RegistryError(
            f"registry {registry.host} does not offer its catalog to this account ({exc}). Name the "
            f"repository instead, e.g. `search {registry.host}/team/{query or 'filter'}`") from None
    needle = query.lower()
    matches = sorted(name for name in repositories if needle in name.lower())
    return [Found(name, sorted(registry.tags(name))) for name in matches[:limit]]


def tags(registry: Registry, repository: str) -> Found:
    return Found(repository, sorted(registry.tags(repository)))
