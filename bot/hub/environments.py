"""The environments pages: what wasmbot has deployed where (digest, image, who deployed it and
who approved it), each environment's history, and rollback to an earlier digest.

Everything comes from the deploy history the deploy stage records (workers/stages/deploy.py),
as ``/wasm status`` and ``/wasm history`` read it.  Rollback is ``/wasm deploy IMAGE@DIGEST
--env ENV`` (with the root id and plugin config recorded for that digest) run through chat's
dispatch (bot/hub/acting.py): the same permission (``deploy:ENV``), the same approval in a
protected environment, the same job.  The button shows only to those the rule allows; the POST
is refused with 403 for anyone else all the same.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web

from bot.hub import catalogue
from bot.hub.access import allowed, require
from bot.hub.acting import act
from bot.hub.pages import render, settings_of, store
from bot.hublinks import module_path
from workers.config import Environment, Settings

HISTORY = 200  # records shown on an environment's page


@dataclass
class Place:
    """One environment: its configuration (None: only the history knows it) and what is
    deployed there now, by filter."""

    name: str
    config: Environment | None
    current: list[dict[str, str]] = field(default_factory=list)


def current(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """The newest record of each filter (records newest first), leaving out removed ones."""
    latest: dict[str, dict[str, str]] = {}
    for record in records:
        latest.setdefault(record["filter"], record)
    return [r for _, r in sorted(latest.items()) if r["action"] != "undeploy"]


def places(settings: Settings, records: list[dict[str, str]]) -> list[Place]:
    by_env: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_env.setdefault(record["environment"], []).append(record)
    names = sorted(set(settings.environments) | set(by_env))
    return [Place(name, settings.environments.get(name), current(by_env.get(name, []))) for name in names]


def rollback_text(env: str, record: dict[str, str]) -> str:
    """The chat command that deploys ``record`` again: its image pinned to its digest, with the
    root id and plugin config it was deployed with."""
    words = ["/wasm", "deploy", f"{record['image'].split('@')[0]}@{record['digest']}", "--env", env]
    if record.get("root_id"):
        words += ["--root-id", record["root_id"]]
    if record.get("config"):
        words += ["--config", record["config"]]
    return shlex.join(words)


def earlier(records: list[dict[str, str]]) -> list[tuple[dict[str, str], bool]]:
    """Each record with whether it can be rolled back to: a deploy of a digest its filter does
    not run now."""
    now = {r["filter"]: r for r in current(records)}
    return [(r, r["action"] != "undeploy" and bool(r.get("digest")) and r["filter"] in now
             and now[r["filter"]]["digest"] != r["digest"]) for r in records]


def builds(settings: Settings) -> dict[str, str]:
    """The job that built each digest, as the module catalogue knows it (the ``io.wasmbot.job``
    annotation wasmbot's push writes): which build produced what is deployed."""
    found = catalogue.load(settings) if settings.default_registry else None
    if found is None:
        return {}
    return {digest: e.job for e in found.entries if e.job for digest in (e.digest, e.resolved) if digest}


async def environments_page(request: web.Request) -> web.Response:
    settings = settings_of(request)
    records = await asyncio.to_thread(store(request).deploys, None)
    return await render(request, "environments.html", section="environments",
                        places=places(settings, records), module_path=partial(module_path, settings),
                        builds=await asyncio.to_thread(builds, settings))


async def environment_page(request: web.Request) -> web.Response:
    settings = settings_of(request)
    name = request.match_info["name"]
    records = await asyncio.to_thread(store(request).deploys, name, HISTORY)
    if name not in settings.environments and not records:
        raise web.HTTPNotFound(text=f"no environment {name}\n")
    refused = await allowed(request, f"deploy:{name}")
    return await render(request, "environment.html", section="environments",
                        place=Place(name, settings.environments.get(name), current(records)),
                        history=earlier(records), refused=refused, module_path=partial(module_path, settings),
                        builds=await asyncio.to_thread(builds, settings))


async def rollback(request: web.Request) -> web.Response:
    """Deploy an earlier record's digest again, as ``/wasm deploy`` from chat would.  Who may
    not deploy there is refused before the history is read (dispatch checks again)."""
    name = request.match_info["name"]
    await require(request, f"deploy:{name}")
    form = await request.post()
    wanted = (str(form.get("filter", "")), str(form.get("digest", "")))
    records = await asyncio.to_thread(store(request).deploys, name, HISTORY)
    record = next((r for r, can in earlier(records) if can and (r["filter"], r["digest"]) == wanted), None)
    if record is None:
        why = f"{wanted[0]} in {name} has no earlier deploy of {wanted[1]} to roll back to"
        return await render(request, "refused.html", status=409, reason=why)
    return await act(request, rollback_text(name, record))


def routes(hub: web.Application, settings: Settings) -> None:
    hub.router.add_get("/environments", environments_page)
    hub.router.add_get("/environments/{name}", environment_page)
    hub.router.add_post("/environments/{name}/rollback", rollback)
