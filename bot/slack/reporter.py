"""Keep each job's Slack message in step with the job, and announce releases.

One task per job follows the job's event stream and edits the message with ``chat.update``:
state changes only (log lines do not), at most one edit per ``slack_update_interval`` seconds,
and always a last edit when the job finishes.  Slack's ``ratelimited`` answers are retried
after their ``Retry-After`` by the client's retry handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.follow import Follower, follow
from bot.hublinks import job_links
from bot.loglinks import log_url
from bot.slack import blocks
from workers.commands import released
from workers.config import Settings
from workers.jobs import Job, State
from workers.store import JobStore

log = logging.getLogger(__name__)


POLL_ONLY = 0.0


async def _nothing(_job: Job) -> None:
    return None


class Reporter(Follower):
    def __init__(
        self, settings: Settings, store: JobStore, clients: Callable[[str | None], Awaitable[AsyncWebClient]]
    ) -> None:
        super().__init__(store, "slack-report", threads=64)
        self.settings = settings
        self.clients = clients
        self.updates: dict[str, int] = {}  # chat.update calls per job, for tests and benchmarks

    def log_url(self, job: Job) -> str | None:
        return log_url(self.settings, job.id)

    def announce_when_released(self, job_id: str) -> None:
        """For jobs from other front ends (a GitHub release): no job message, just the announcement."""
        async def run() -> None:
            job = await follow(self.store, job_id, self.threads, POLL_ONLY, _nothing)
            if job is not None and job.state is State.SUCCEEDED:
                await self.announce(job)

        self._start(job_id, run)

    async def _follow(self, job_id: str) -> None:
        job = await follow(self.store, job_id, self.threads, self.settings.slack_update_interval,
                           self._update, wanted=lambda job: "slack" in job.reports)
        if job is not None and job.state is State.SUCCEEDED and released(job.command):
            await self.announce(job)

    async def _update(self, job: Job) -> None:
        where = job.reports["slack"]
        try:
            client = await self.clients(where.get("team") or None)
            await client.chat_update(
                channel=where["channel"],
                ts=where["ts"],
                text=blocks.summary(job),
                blocks=blocks.job_message(
                    job, self.log_url(job), environments=list(self.settings.environments),
                    links=job_links(self.settings, job),
                ),
            )
            self.updates[job.id] = self.updates.get(job.id, 0) + 1
        except Exception:  # a lost edit must not stop the next one
            log.exception("could not update the Slack message of job %s", job.id)

    async def announce(self, job: Job) -> dict[str, Any] | None:
        """Post the release of ``job``'s image to the announcement channel."""
        from workers.oci import reference
        from workers.oci.connect import connect
        from workers.oci.inspect import inspect

        ref = reference.parse(job.artifacts["image"]).with_digest(job.artifacts["digest"])
        try:
            found = await asyncio.to_thread(lambda: inspect(connect(self.settings, ref.registry), ref))
        except Exception:
            log.exception("could not inspect %s for its announcement", ref)
            return None
        client = await self.clients(job.reports.get("slack", {}).get("team") or None)
        answer = await client.chat_postMessage(
            channel=self.settings.slack_announce_channel,
            text=f"released {found.reference}@{found.digest}",
            blocks=blocks.announcement(job, found.as_dict()),
        )
        return dict(answer.data) if isinstance(answer.data, dict) else None
