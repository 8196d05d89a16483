"""Pipeline stages.  Each takes a ``StageContext`` and returns the artifacts it made.

A stage raises ``StageError`` with a message written for the engineer who asked for the job;
any other exception is a wasmbot bug and is reported as one.
"""

from __future__ import annotations

from collections.abc import Callable
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
