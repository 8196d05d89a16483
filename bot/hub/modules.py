"""The modules pages: every repository and tag in the default registry, searchable, with what
a proxy needs to know (ABI versions, root ids), size, when pushed, whether signed, and the
lines to pull or deploy it.  They render from the catalogue the store keeps
(bot/hub/catalogue.py), never from the registry directly.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlencode

from aiohttp import web

from bot.hub import catalogue
from bot.hub.pages import page_number, render, settings_of
from workers.config import Settings

PAGE_SIZE = 100  # tags on one page: a phone scrolls through it, and it renders in a few ms


def pull_line(host: str, entry: catalogue.Entry) -> str:
    """``wasmbot pull`` of the tag, pinned to what it names now."""
    pinned = f"@{entry.resolved or entry.digest}" if entry.resolved or entry.digest else ""
    return f"wasmbot pull {host}/{entry.repository}:{entry.tag}{pinned} -o {_file(entry)}"


def deploy_line(host: str, entry: catalogue.Entry, env: str) -> str:
    """``/wasm deploy`` of the tag to ``env``; approval and the deploy stage pin it to a digest."""
    return f"/wasm deploy {host}/{entry.repository}:{entry.tag} --env {shlex.quote(env)}"


def _file(entry: catalogue.Entry) -> str:
    return entry.repository.rsplit("/", 1)[-1] + ".wasm"


def environments(settings: Settings) -> list[str]:
    """The environments a deploy line may name: the configured ones, else the local Envoy."""
    return sorted(settings.environments) or ["envoy"]


def _query(query: str, page: int) -> str:
    return urlencode(({"q": query} if query else {}) | ({"page": str(page)} if page > 1 else {}))


async def modules_page(request: web.Request) -> web.Response:
    settings = settings_of(request)
    query = request.query.get("q", "")[:200]
    page = page_number(request.query.get("page"))
    if not settings.default_registry:
        return await render(request, "modules.html", section="modules", catalogue=None, query=query,
                            entries=[], total=0, reading=False, lines=None, page=page, previous=None,
                            next=None)
    found = await catalogue.current(settings)
    entries = found.search(query) if found else []
    start = (page - 1) * PAGE_SIZE
    return await render(request, "modules.html", section="modules", catalogue=found, query=query,
                        entries=entries[start:start + PAGE_SIZE], total=len(entries), reading=found is None,
                        lines=Lines(settings), page=page,
                        previous=_query(query, page - 1) if page > 1 else None,
                        next=_query(query, page + 1) if len(entries) > start + PAGE_SIZE else None)


async def module_page(request: web.Request) -> web.Response:
    settings = settings_of(request)
    repository = request.match_info["repository"].strip("/")
    found = await catalogue.current(settings) if settings.default_registry else None
    if found is None:
        raise web.HTTPFound("/hub/modules")
    entries = [entry for entry in found.entries if entry.repository == repository]
    if not entries:
        raise web.HTTPNotFound(text=f"no repository {repository} in {found.registry}'s catalogue "
                                    f"(read {len(found.repositories())} repositories)\n")
    return await render(request, "module.html", section="modules", catalogue=found, repository=repository,
                        entries=entries, envs=environments(settings), lines=Lines(settings))


class Lines:
    """The copyable lines, for templates."""

    def __init__(self, settings: Settings) -> None:
        self.host = str(settings.default_registry)
        self.env = environments(settings)[0]

    def pull(self, entry: catalogue.Entry) -> str:
        return pull_line(self.host, entry)

    def deploy(self, entry: catalogue.Entry, env: str | None = None) -> str:
        return deploy_line(self.host, entry, env or self.env)


def routes(hub: web.Application, settings: Settings) -> None:
    hub.router.add_get("/modules", modules_page)
    hub.router.add_get(r"/modules/{repository:.+}", module_page)
