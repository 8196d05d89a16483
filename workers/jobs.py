"""The job record: who asked for what, and where each stage of it stands.

A record is plain data (pydantic) so that both stores keep it as JSON and every front end can
render it; its command is the typed command the front end parsed, checked again when read.
Log lines and state changes are kept beside it as an ordered event stream.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from workers.commands import Command


class State(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.SKIPPED, State.CANCELLED)


class Stage(BaseModel):
    name: str
    state: State = State.PENDING
    attempts: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


class Job(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    requester: str
    origin: str  # "cli", "slack:C123", "github:owner/repo#12", ...
    command: Annotated[Command, Field(discriminator="name")]  # validated when the job is made or read
    text: str
    source_root: str
    state: State = State.QUEUED
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    stages: list[Stage]
    artifacts: dict[str, str] = Field(default_factory=dict)
    # Where front ends report on this job, e.g. {"slack": {"team": …, "channel": …, "ts": …}}.
    reports: dict[str, dict[str, str]] = Field(default_factory=dict)
    # A change to a protected environment: {"action", "digest", "expires_at", "approved_by", …}.
    approval: dict[str, str] = Field(default_factory=dict)

    @property
    def awaiting_approval(self) -> bool:
        return bool(self.approval) and "approved_by" not in self.approval and self.state is State.PENDING

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"job {self.id} has no stage {name!r}")

    def failed_stage(self) -> Stage | None:
        return next((s for s in self.stages if s.state in (State.FAILED, State.CANCELLED)), None)

    def next_stage(self) -> Stage | None:
        """The first stage not finished, or None when the job has run to its end."""
        return next((s for s in self.stages if not s.state.finished), None)

    def stop(self, state: State, error: str | None = None) -> None:
        """End the job as ``state`` (failed or cancelled).  Every stage still waiting to run is
        skipped, so no front end shows a stage as pending that will never run; with ``error``
        (a cancel, saying by whom), the first of them takes ``state`` and ``error`` instead, the
        stage that retry starts from.  A running stage finishes; retry makes the rest pending."""
        self.state = state
        waiting = [s for s in self.stages if s.state in (State.PENDING, State.QUEUED)]
        if waiting and error is not None:
            waiting[0].state, waiting[0].error = state, error
            waiting = waiting[1:]
        for stage in waiting:
            stage.state, stage.error = State.SKIPPED, None


class Event(BaseModel):
    """One line of a job's history: a log line or a state change, numbered in order."""

    seq: int = 0
    ts: float = Field(default_factory=time.time)
    kind: str  # "log" | "stage" | "job"
    stage: str | None = None
    state: State | None = None
    text: str = ""


def state_events(before: Job | None, after: Job) -> list[Event]:
    """The events that describe the change from ``before`` to ``after``."""
    events: list[Event] = []
    old = {s.name: s for s in before.stages} if before else {}
    for stage in after.stages:
        prev = old.get(stage.name)
        if prev is None or prev.state != stage.state:
            text = stage.error or "" if stage.state is State.FAILED else ""
            events.append(Event(kind="stage", stage=stage.name, state=stage.state, text=text))
    if before is None or before.state != after.state:
        events.append(Event(kind="job", state=after.state))
    return events
