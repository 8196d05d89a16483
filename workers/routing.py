"""Which queue a stage goes to, and whether a live worker consumes it.

Only the build stage needs a toolchain (its language's container, workers/recipes.py); every
other stage (scaffold, fetch, test, push, deploy, attach, ...) runs in any worker.  So there is
one general queue, ``wasmbot``, which every worker consumes, and one queue per toolchain,
``wasmbot.<toolchain>``, consumed only by the workers that declare it (``wasmbot worker
--toolchains c,rust``; default: all).  A build of a language nobody serves would wait in its
queue forever, so it is refused when the job is submitted (or, for a GitHub job whose source
is known only once fetched, when the fetch hands over to the build).

Which toolchains the live workers serve comes from their heartbeats in the job store (written
by each worker's maintenance thread, from the queues it actually consumes): one read, answered
in milliseconds whether or not any worker is up.  Celery's ``inspect active_queues`` would wait
out its whole timeout on every submit (it cannot know how many workers should answer), and
the embedded SQLite broker has no broadcast at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from workers.recipes import PRECOMPILED, RECIPES

GENERAL = "wasmbot"
TOOLCHAINS: tuple[str, ...] = tuple(sorted({r.toolchain for r in RECIPES.values()}))
NO_TOOLCHAINS = "none"  # ``--toolchains none``: only the stages that need no toolchain


class Unserved(ValueError):
    """No live worker consumes the queue a job needs; the message says how to add one."""


def queue(toolchain: str | None) -> str:
    return GENERAL if toolchain is None else f"{GENERAL}.{toolchain}"


def queues(toolchains: Iterable[str]) -> list[str]:
    """What a worker serving ``toolchains`` consumes: the general queue and theirs."""
    return [GENERAL, *(queue(t) for t in toolchains)]


def served(queue_names: Iterable[str]) -> list[str]:
    """The toolchains a worker consuming ``queue_names`` serves."""
    prefix = f"{GENERAL}."
    return sorted(q.removeprefix(prefix) for q in queue_names if q.startswith(prefix))


def parse(text: str | None) -> tuple[str, ...]:
    """``--toolchains``: a comma-separated list, ``none``, or (None) every toolchain."""
    if text is None:
        return TOOLCHAINS
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == [NO_TOOLCHAINS]:
        return ()
    unknown = [n for n in names if n not in TOOLCHAINS]
    if unknown or not names:
        raise ValueError(f"unknown toolchain {', '.join(unknown) or repr(text)}; choose from "
                         f"{', '.join(TOOLCHAINS)} (comma-separated), or {NO_TOOLCHAINS}")
    return tuple(dict.fromkeys(names))


def toolchain(lang: str | None) -> str | None:
    """The toolchain a build of ``lang`` needs (None: unknown yet, or a precompiled module)."""
    if lang is None or lang == PRECOMPILED:
        return None
    return RECIPES[lang].toolchain


def stage_queue(stage: str, lang: str | None) -> str:
    return queue(toolchain(lang)) if stage == "build" else GENERAL


def check(lang: str | None, live: dict[str, list[str]]) -> None:
    """Refuse a build of ``lang`` that no live worker serves.  ``live``: each live worker's
    toolchains.  With no worker live at all the job waits for one, as any job does (the CLI
    starts its own; a server's workers may be restarting)."""
    needed = toolchain(lang)
    if needed is None or not live or any(needed in ts for ts in live.values()):
        return
    offered = sorted({t for ts in live.values() for t in ts})
    raise Unserved(f"no live worker has the {needed} toolchain this {lang} build needs (the "
                   f"{len(live)} live worker(s) serve {', '.join(offered) or 'no toolchain'}); "
                   f"start one where {needed} builds can run: wasmbot worker --toolchains {needed}")
