"""Pipeline stages.  Each takes a ``StageContext`` and returns the artifacts it made.

What a stage hands to a later stage (or to a front end) goes through ``keep`` and ``load``
(workers/artifacts.py): the stages of one job may run on different hosts, so ``workdir``, this
worker's directory for the job, is a cache and scratch space, never the channel between stages.

A stage raises ``StageError`` with a message written for the engineer who asked for the job;
any other exception is a wasmbot bug and is reported as one.  What a stage says (errors and log
lines) names files as the engineer knows them, relative to the source (``relative_paths``):
never the server's data directory, nor where a container mounts the source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from workers import artifacts, outage
from workers.config import Settings
from workers.jobs import Job
from workers.store import open_store


class StageError(Exception):
    """The stage failed for a reason the requester can act on."""


class StageSkipped(Exception):
    """The stage has nothing to do for this job; the message says why."""


@dataclass
class StageContext:
    job: Job
    settings: Settings
    workdir: Path  # this worker's directory for the job: scratch space and cache, not shared
    log: Callable[[str], None]


StageFn = Callable[[StageContext], dict[str, str]]


def keep(ctx: StageContext, name: str, data: bytes, *, large: bool = False) -> str:
    """Keep an output for later stages and front ends; its reference goes in the stage's result.
    A brief store outage is waited out: the work that made the output is not lost to it."""
    store, job_id = open_store(ctx.settings), ctx.job.id
    try:
        return outage.retrying(lambda: artifacts.put(ctx.settings, store, job_id, name, data, large=large),
                               f"the output {name}")
    except artifacts.ArtifactError as exc:
        raise StageError(str(exc)) from None


def load(ctx: StageContext, ref: str, limit: int = artifacts.READ_LIMIT) -> bytes:
    """An earlier stage's output, by the reference it recorded."""
    store = open_store(ctx.settings)
    try:
        return outage.retrying(lambda: artifacts.get(ctx.settings, store, ref, limit), "reading an output")
    except artifacts.ArtifactError as exc:
        raise StageError(str(exc)) from None


def relative_paths(places: Iterable[tuple[str | Path, str]]) -> Callable[[str], str]:
    """A rewriter of text that shows each absolute directory of ``places`` as its replacement:
    ``""`` makes the paths below it relative (the directory itself reads ``.``).  The longest
    directory wins; a directory only matches as a whole path (``/src`` is not in ``/deps/x/src``)."""
    found: dict[str, str] = {}
    for directory, shown in places:
        for form in {str(directory), os.path.realpath(directory)}:
            form = form.rstrip("/")
            if form.startswith("/") and form not in found:
                found[form] = shown
    rules = [(re.compile(r"(?<![\w.~/-])" + re.escape(d) + r"(/|(?![\w.~-]))"), shown)
             for d, shown in sorted(found.items(), key=lambda item: -len(item[0]))]

    def rewrite(text: str) -> str:
        for pattern, shown in rules:
            text = pattern.sub(_replacement(shown), text)
        return text
    return rewrite


def _replacement(shown: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        slash = match[1]
        return shown + slash if shown else ("" if slash else ".")
    return replace
