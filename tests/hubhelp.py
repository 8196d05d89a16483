"""The hub under test: ``wasmbot serve`` as a real process on loopback, signing in with GitHub
(the OAuth web flow against tests/githubapi.py), its job store read and written directly as
workers do, and Debian's Chromium driven by Playwright (no browser downloads: ``executable_path``).

Used by tests/test_hub_*.py.  Browser waits are Playwright's own (``expect``, ``wait_for_*``):
they wait for the page to change, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from githubapi import GitHubStandIn

from bot.localservices import Service, _wait_until, free_port, healthy
from workers.jobs import Job, Stage, State
from workers.store import JobStore, RedisStore, SqliteStore

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "Iv1.hubtests0000", "hub-oauth-secret-for-tests"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by deploy/setup.sh


@dataclass
class Hub:
    url: str
    store: JobStore
    github: GitHubStandIn
    process: subprocess.Popen[bytes]
    data_dir: Path


@contextmanager
def serve_hub(tmp_path: Path, env: dict[str, str] | None = None, redis_url: str | None = None) -> Iterator[Hub]:
    """``wasmbot serve`` with sign-in through a GitHub stand-in (octocat signs in by default)."""
    github = GitHubStandIn()
    github.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    github.add_oauth_app(CLIENT_ID, CLIENT_SECRET, f"{url}/hub/oauth/callback")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    settings = {"WASMBOT_DATA_DIR": str(data), "WASMBOT_CONFIG": str(tmp_path / "none.toml"),
                "GITHUB_CLIENT_ID": CLIENT_ID, "GITHUB_CLIENT_SECRET": CLIENT_SECRET,
                "GITHUB_WEB_URL": github.url, "GITHUB_API_URL": github.url, "WASMBOT_PUBLIC_URL": url}
    if redis_url:  # replicas may share Redis, so sessions and links need a configured key
        settings |= {"REDIS_URL": redis_url, "WASMBOT_LOG_LINK_KEY": "test-log-link-key"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WASMBOT_", "GITHUB_")) and k != "REDIS_URL"}
    log = tmp_path / "serve.log"
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                               env=base | settings | (env or {}), cwd=ROOT, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)

    store: JobStore = RedisStore(redis_url) if redis_url else SqliteStore(data / "jobs.sqlite")
    try:
        _wait_until(healthy(url), Service("wasmbot serve", process, url, log), timeout=30)
        yield Hub(url, store, github, process, data)
    finally:
        process.terminate()
        process.wait(30)
        github.stop()


def make_job(store: JobStore, *, text: str = "build .", requester: str = "github:octocat",
             origin: str = "cli", state: State = State.RUNNING, stages: tuple[str, ...] = ("build", "test"),
             **fields: Any) -> Job:
    """A job record as a front end makes it, stored."""
    job = Job(requester=requester, origin=origin, text=text, source_root="/", state=state,
              command={"name": "build", "source": "."}, stages=[Stage(name=s) for s in stages], **fields)
    store.create(job)
    return job


@contextmanager
def browser() -> Iterator[Any]:
    """A Chromium browser (Playwright's ``Browser``); root needs ``--no-sandbox``."""
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        raise AssertionError(f"{CHROMIUM} is missing: deploy/setup.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def fetched_from(page: Any) -> list[str]:
    """The URLs of what ``page`` loads besides its documents (styles, scripts, images, fonts,
    event streams), recorded from now on: the hub serves all of it itself, no CDN."""
    loaded: list[str] = []
    page.on("request", lambda request: loaded.append(request.url) if request.resource_type != "document" else None)
    return loaded


def sign_in(page: Any, hub: Hub, login: str = "octocat") -> None:
    """Sign ``page`` in to the hub as ``login`` through the GitHub OAuth flow, as a person does."""
    hub.github.signing_in = login
    page.goto(f"{hub.url}/hub/signin")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.wait_for_url(f"{hub.url}/hub/jobs")
    page.get_by_role("button", name="Sign out").wait_for()


def sse_events(raw: str) -> list[tuple[str, Any]]:
    """Server-sent events in ``raw``: (event, JSON data) pairs, comments and retry lines left out."""
    found = []
    for block in raw.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found
