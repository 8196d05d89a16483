"""Pipeline stages.  Each takes a ``StageContext`` and returns the artifacts it made.

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

from workers.config import Settings
from workers.jobs import Job


class StageError(Exception):
    """The stage failed for a reason the requester can act on."""


class StageSkipped(Exception):
    """The stage has nothing to do for this job; the message says why."""


@dataclass
class StageContext:
    job: Job
    settings: Settings
    workdir: Path  # this job's artifact directory, shared by its stages
    log: Callable[[str], None]


StageFn = Callable[[StageContext], dict[str, str]]


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
