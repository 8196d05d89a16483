"""The hub's modules, environments and approvals pages in a real browser (Debian's Chromium,
driven by Playwright: tests/hubhelp.py), served by a real ``wasmbot serve`` with a real worker,
Redis, docker-registry and Kubernetes API server; people sign in through the GitHub OAuth flow.

Searching modules; approving a deployment and watching it go out; and someone who may not
approve or roll back finding no button and, posting the form anyway, a 403.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hubhelp import ROOT, Hub, browser, fetched_from, serve_hub, sign_in
from kubeserver import KubeServer
from ocihelp import client, host_of, module_bytes
from playwright.sync_api import Locator, Page, expect

from bot.localservices import Service, start_registry
from workers.oci import image, reference
from workers.oci.push import Pushed, push

PERMISSIONS = {"approve:prod": ["user:github:bob"], "deploy:prod": ["user:github:bob"]}


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Service]:
    service = start_registry(tmp_path / "registry")
    yield service
    service.stop()


def push_module(registry: Service, tmp: Path, name: str, roots: list[str], padding: int = 0) -> Pushed:
    made = image.build("compat", module_bytes(padding), image.Runtime(["0.2.1"], roots), {})
    return push(client(registry, tmp), reference.parse(f"{host_of(registry)}/{name}"), made)


def env_for(tmp: Path, registry: Service, redis_url: str, **more: str) -> dict[str, str]:
    """What ``wasmbot serve``, the worker and the CLI share besides what serve_hub sets."""
    return {"WASMBOT_DEFAULT_REGISTRY": host_of(registry), "WASMBOT_PERMISSIONS": json.dumps(PERMISSIONS),
            "WASMBOT_DOCKER_CONFIG": str(tmp / "no-docker-config.json"), "REDIS_URL": redis_url,
            "WASMBOT_LEASE_TTL": "3", **more}


def processes_env(tmp: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment serve_hub gives ``wasmbot serve``, for the worker and the CLI."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WASMBOT_", "GITHUB_")) and k != "REDIS_URL"}
    return base | {"WASMBOT_DATA_DIR": str(tmp / "data"), "WASMBOT_CONFIG": str(tmp / "none.toml")} | env


def csrf_of(page: Any) -> str:
    """The session's CSRF token, from the sign-out form every page carries."""
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return str(token)


def test_search_modules(tmp_path: Path, redis_service: Service, own_registry: Service) -> None:
    redis.Redis.from_url(redis_service.url).flushdb()
    push_module(own_registry, tmp_path, "team/add-header:v1", ["add-header"])
    push_module(own_registry, tmp_path, "team/auth:v2", ["authz"])
    push_module(own_registry, tmp_path, "edge/ratelimit:v1", ["limiter"])
    with serve_hub(tmp_path, env_for(tmp_path, own_registry, redis_service.url), redis_service.url) as hub, \
            browser() as chromium:
        page = chromium.new_page()
        sign_in(page, hub, "bob")
        page.get_by_role("link", name="Modules").click()  # the first visit reads the registry
        expect(page.locator("tr.module")).to_have_count(3)
        search = page.get_by_role("searchbox", name="Search repository, tag or root id")
        search.fill("limiter")  # a root id
        search.press("Enter")
        expect(page.locator("tr.module")).to_have_count(1)
        expect(page.locator("tr.module")).to_contain_text("edge/ratelimit:v1")
        assert page.url.endswith("/hub/modules?q=limiter")
        page.get_by_role("link", name="edge/ratelimit").click()
        line = page.get_by_role("textbox", name="deploy command for v1 to envoy")
        expect(line).to_have_value(f"/wasm deploy {host_of(own_registry)}/edge/ratelimit:v1 --env envoy")


@pytest.fixture
def guarded(tmp_path: Path, redis_service: Service, own_registry: Service, kube: KubeServer
            ) -> Iterator[tuple[Hub, dict[str, str], Pushed]]:
    """``wasmbot serve`` and a worker with a protected ``prod`` on the API server, and a job
    from alice (at the CLI) waiting for its approval: the hub, the processes' env, the image."""
    redis.Redis.from_url(redis_service.url).flushdb()
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    environments = {"prod": {"kubeconfig": str(kubeconfig), "namespace": "shop", "protected": True}}
    env = env_for(tmp_path, own_registry, redis_service.url, WASMBOT_ENVIRONMENTS=json.dumps(environments))
    pushed = push_module(own_registry, tmp_path, "team/add-header:v1", ["add-header"])
    with serve_hub(tmp_path, env, redis_service.url) as hub:
        processes = processes_env(tmp_path, env)
        asked = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--detach",
                                f"/wasm deploy {pushed.reference} --env prod"], env=processes | {"LOGNAME": "alice"},
                               cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert asked.returncode == 0 and "waits for an approval" in asked.stdout, asked.stdout + asked.stderr
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1"],
                                  env=processes, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield hub, processes, pushed
        finally:
            worker.terminate()
            worker.wait(30)


def approvals(page: Page, hub: Hub, login: str) -> tuple[Page, Locator]:
    """``login`` signed in on the approvals page, where alice's deploy is the one waiting."""
    sign_in(page, hub, login)
    page.get_by_role("link", name="Approvals").click()
    waiting = page.locator("section.approval")
    expect(waiting).to_have_count(1)
    return page, waiting


def test_approve_a_deployment_and_see_it_go_out(guarded: tuple[Hub, dict[str, str], Pushed],
                                                kube: KubeServer) -> None:
    hub, _, pushed = guarded
    with browser() as chromium:
        page, waiting = approvals(chromium.new_page(), hub, "bob")
        expect(waiting).to_contain_text(f"/wasm deploy {pushed.reference} --env prod")
        expect(waiting).to_contain_text(pushed.digest)
        waiting.get_by_role("button", name="Approve").click()
        page.wait_for_url(re.compile(r".*/hub/jobs/[0-9a-f]{12}$"))
        expect(page.locator("#job-state")).to_have_text("succeeded", timeout=120_000)  # the worker deployed it
        assert kube.objects[("wasmplugins", "shop", "add-header")]["spec"]["sha256"] == \
            pushed.digest.removeprefix("sha256:")

        page.get_by_role("link", name="Environments").click()
        deployed = page.locator("section.environment").filter(has_text="prod")
        expect(deployed).to_contain_text(pushed.digest)
        expect(deployed.locator("td[data-label='Approved by']")).to_have_text("github:bob")
        expect(deployed.locator("td[data-label='By']")).to_have_text("alice")
        page.get_by_role("link", name="Approvals").click()
        expect(page.get_by_text("Nothing waits for an approval.")).to_be_visible()


def test_who_may_not_approve_or_roll_back_cannot(guarded: tuple[Hub, dict[str, str], Pushed]) -> None:
    hub, _, _ = guarded
    job_id = hub.store.recent(1)[0].id
    with browser() as chromium:
        page, waiting = approvals(chromium.new_page(), hub, "carol")
        expect(waiting).to_contain_text("you may not approve:prod")
        expect(waiting.get_by_role("button")).to_have_count(0)
        token = csrf_of(page)
        for verb in ("approve", "deny"):  # the form, sent anyway
            answer = page.request.post(f"{hub.url}/hub/approvals/{job_id}/{verb}", form={"csrf_token": token},
                                       max_redirects=0)
            assert answer.status == 403 and "you may not approve:prod" in answer.text()

        page.goto(f"{hub.url}/hub/environments/prod")
        expect(page.get_by_text("You may not roll back here: you may not deploy:prod")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Roll"))).to_have_count(0)
        answer = page.request.post(f"{hub.url}/hub/environments/prod/rollback", max_redirects=0,
                                   form={"csrf_token": token, "filter": "add-header", "digest": "sha256:" + "0" * 64})
        assert answer.status == 403 and "you may not deploy:prod" in answer.text()
    job = hub.store.get(job_id)
    assert job is not None and job.awaiting_approval


def test_the_pages_fit_a_phone_and_work_from_the_keyboard(guarded: tuple[Hub, dict[str, str], Pushed]) -> None:
    hub, _, pushed = guarded
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
        sign_in(page, hub, "bob")
        loaded = fetched_from(page)
        for path in ("/hub/modules", "/hub/modules/team/add-header", "/hub/environments",
                     "/hub/environments/prod", "/hub/approvals"):
            page.goto(f"{hub.url}{path}")
            expect(page.locator("main h1")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone's screen"
            scrolled = page.evaluate("Math.max(0, ...[...document.querySelectorAll('.table-wrap')]"
                                     ".map(t => t.scrollWidth - t.clientWidth))")
            assert scrolled <= 0, f"a table of {path} scrolls sideways by {scrolled}px: rows should stack"
        assert loaded and all(url.startswith(f"{hub.url}/hub/") for url in loaded), loaded  # no CDN
        deny = page.get_by_role("button", name="Deny")
        for _ in range(40):  # Tab through the page, as a keyboard user does, to the Deny button
            page.keyboard.press("Tab")
            if deny.evaluate("button => button === document.activeElement"):
                break
        expect(deny).to_be_focused()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/hub/jobs/[0-9a-f]{12}$"))
        expect(page.locator("#job-state")).to_have_text("cancelled")
    assert pushed.digest not in str(hub.store.deploys("prod"))
