"""The jobs pages: the list (filter by repository, requester and state; paginated) and a job's
page (stages, timings, module digest, ABI report, links to the PR and Slack thread, and its
log, followed live over server-sent events by a few lines of static/log.js; without
JavaScript the page shows the log so far)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.hub.pages import page_number, render, settings_of, store
from bot.hublinks import job_links
from workers.abitest.report import Report
from workers.artifacts import in_store
from workers.config import Settings
from workers.jobs import Event, Job, State
from workers.store import JobStore

PAGE_SIZE = 50
SCAN = 5000  # newest jobs the list goes back through (a filter looks at all of them)
# Seconds one wait for new log lines blocks a thread (and between keep-alives); the process
# waits for those threads when it stops, so this is also what an open stream adds to a stop.
POLL = 1.0
STREAMS = 32  # live logs followed at once; a page past that shows the log so far
JOB_ID = "{job:[0-9a-f]{12}}"
THREADS = web.AppKey("hub_log_threads", concurrent.futures.ThreadPoolExecutor)
SLOTS = web.AppKey("hub_log_slots", asyncio.Semaphore)
CLOSING = web.AppKey("hub_closing", asyncio.Event)


def repository(job: Job) -> str:
    """The repository a job is about: its GitHub repository, else the image's registry repository."""
    github = job.reports.get("github", {}).get("repo")
    if github:
        return github
    if job.origin.startswith("github:"):
        return job.origin.removeprefix("github:").partition("#")[0]
    image = job.artifacts.get("image", "")
    return image.rpartition(":")[0] if ":" in image.rpartition("/")[2] else image


def line(event: Event) -> str:
    """A log event as one line of the job's log (the signed log route shows the same)."""
    return f"[{event.stage or 'job'}] {event.text or (event.state.value if event.state else '')}"


@dataclass(frozen=True)
class Filters:
    repo: str = ""
    requester: str = ""
    state: str = ""

    def match(self, job: Job) -> bool:
        return ((not self.repo or self.repo.lower() in repository(job).lower())
                and (not self.requester or self.requester.lower() in job.requester.lower())
                and (not self.state or job.state.value == self.state))

    def query(self, page: int) -> str:
        values = {k: v for k, v in (("repo", self.repo), ("requester", self.requester),
                                    ("state", self.state)) if v}
        return urlencode(values | ({"page": str(page)} if page > 1 else {}))


async def jobs_page(request: web.Request) -> web.Response:
    wanted = Filters(request.query.get("repo", "").strip(), request.query.get("requester", "").strip(),
                     request.query.get("state", "").strip())
    if wanted.state and wanted.state not in {s.value for s in State}:
        raise web.HTTPBadRequest(text=f"no job state {wanted.state!r}\n")
    page = page_number(request.query.get("page"))
    start = (page - 1) * PAGE_SIZE
    # Unfiltered, one job past the page says whether there is a next page.
    wanted_jobs = SCAN if wanted != Filters() else min(SCAN, start + PAGE_SIZE + 1)
    newest = await asyncio.to_thread(store(request).recent, wanted_jobs)
    found = [job for job in newest if wanted.match(job)]
    shown = found[start:start + PAGE_SIZE]
    return await render(
        request, "jobs.html", jobs=shown, filters=wanted, states=[s.value for s in State],
        repository=repository, page=page,
        previous=wanted.query(page - 1) if page > 1 else None,
        next=wanted.query(page + 1) if len(found) > start + PAGE_SIZE else None,
        scanned=SCAN if len(newest) == SCAN else None)


def abi_report(jobs: JobStore, job: Job) -> Report | None:
    """The job's ABI test report, read from the job store where the test stage kept it on
    whichever worker ran it (workers/artifacts.py); None when there is none, or no longer."""
    data = in_store(jobs, job.artifacts.get("report", ""))
    if data is None:
        return None
    try:
        return Report.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError):
        return None


def links(job: Job, settings: Settings) -> list[tuple[str, str]]:
    """Where else this job is shown: its module's and environment's pages, the pull request, its
    check run, the Slack thread."""
    found = [(label.capitalize(), url) for label, url in job_links(settings, job, base="")[1:]]
    github = job.reports.get("github", {})
    web_url = settings.github_web_url.rstrip("/")
    if github.get("repo") and github.get("pr"):
        found.append((f"Pull request {github['repo']}#{github['pr']}",
                      f"{web_url}/{github['repo']}/pull/{github['pr']}"))
    if github.get("check_url"):
        found.append(("GitHub check run", github["check_url"]))
    slack = job.reports.get("slack", {})
    if slack.get("channel") and slack.get("ts"):
        found.append(("Slack thread",
                      f"https://slack.com/archives/{slack['channel']}/p{slack['ts'].replace('.', '')}"))
    return found


async def job_page(request: web.Request) -> web.Response:
    job_id = request.match_info["job"]
    jobs = store(request)
    job = await asyncio.to_thread(jobs.get, job_id)
    if job is None:
        raise web.HTTPNotFound(text=f"no job {job_id}\n")
    events = await asyncio.to_thread(jobs.events, job_id)
    report = await asyncio.to_thread(abi_report, jobs, job)
    return await render(
        request, "job.html", job=job, repository=repository(job), report=report,
        links=links(job, settings_of(request)), log=[line(e) for e in events],
        after=events[-1].seq if events else 0)


def _sse(event: str, data: Any, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def job_events(request: web.Request) -> web.StreamResponse:
    """The job's log from ``after`` (or the browser's ``Last-Event-ID``) on, as server-sent events:
    ``log`` (a line), ``state`` (the job's state changed), and ``end`` when the job is finished."""
    job_id = request.match_info["job"]
    jobs = store(request)
    if await asyncio.to_thread(jobs.get, job_id) is None:
        raise web.HTTPNotFound(text=f"no job {job_id}\n")
    try:
        after = int(request.headers.get("Last-Event-ID") or request.query.get("after") or 0)
    except ValueError:
        raise web.HTTPBadRequest(text="after must be an event number\n") from None
    slots = request.app[SLOTS]
    if slots.locked():
        raise web.HTTPServiceUnavailable(text="too many live logs are open; reload later\n")
    async with slots:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await _stream(request, response, job_id, after)
        return response


async def _stream(request: web.Request, response: web.StreamResponse, job_id: str, after: int) -> None:
    jobs, loop = store(request), asyncio.get_running_loop()
    closing = asyncio.ensure_future(request.app[CLOSING].wait())  # the server is stopping
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            waiting = loop.run_in_executor(request.app[THREADS], jobs.events, job_id, after, POLL)
            either: set[asyncio.Future[Any]] = {waiting, closing}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if closing.done():
                return
            events = waiting.result()
            for event in events:
                await response.write(_sse("log", line(event), event.seq))
                if event.kind == "job" and event.state is not None:
                    await response.write(_sse("state", event.state.value, event.seq))
            after = events[-1].seq if events else after
            if not events:
                await response.write(b": still here\n\n")  # a dead connection shows up as a write error
            ended = any(e.kind == "job" and e.state is not None and e.state.finished for e in events)
            if (ended or not events) and await _finished(jobs, job_id, after, response):
                return
    finally:
        closing.cancel()


async def _finished(jobs: JobStore, job_id: str, after: int, response: web.StreamResponse) -> bool:
    """Whether the job is over and every event of it sent; if so, say ``end``."""
    job = await asyncio.to_thread(jobs.get, job_id)
    if job is not None and not job.state.finished:
        return False
    if job is not None:
        unsent: list[Event] = await asyncio.to_thread(jobs.events, job_id, after)
        if unsent:
            return False  # the record is newer than the events read: send those first
    await response.write(_sse("end", job.state.value if job else "gone"))
    return True


def routes(hub: web.Application, settings: Settings) -> None:
    hub[THREADS] = concurrent.futures.ThreadPoolExecutor(STREAMS, thread_name_prefix="hub-log")
    hub[SLOTS] = asyncio.Semaphore(STREAMS)
    hub[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:  # streams end so the server can stop
        app[CLOSING].set()

    async def cleanup(app: web.Application) -> None:
        app[THREADS].shutdown(wait=False, cancel_futures=True)

    hub.on_shutdown.append(closing)
    hub.on_cleanup.append(cleanup)
    hub.router.add_get("/jobs", jobs_page)
    hub.router.add_get(f"/jobs/{JOB_ID}", job_page)
    hub.router.add_get(f"/jobs/{JOB_ID}/events", job_events)
