"""The hub's modules, environments and approvals pages (bot/hub/modules.py, environments.py,
approvals.py), through aiohttp's test client on the real application, with a real Redis store,
a real docker-registry and, for approvals, the real Kubernetes API server the deploy tests use.

People sign in as the hub's sessions have them (bot.hub.session.sign_in: the cookie GitHub
sign-in ends with); the sign-in flow itself is bot/hub/auth.py's to test.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubeserver import KubeServer
from ocihelp import client, host_of, log_lines, module_bytes

from bot.application import make_app
from bot.hub import catalogue
from bot.hub.session import COOKIE, sign_in
from bot.localservices import Service, start_registry
from workers import celery_app
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.oci import image, reference
from workers.oci.push import Pushed, push
from workers.store import JobStore, RedisStore

PERMISSIONS = {
    "deploy:staging": ["user:github:alice", "user:github:bob"],
    "deploy:prod": ["user:github:alice"],
    "approve:prod": ["user:github:alice", "user:github:bob"],
}


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Service]:
    """A registry of the test's own, so its catalogue holds exactly what the test pushed."""
    service = start_registry(tmp_path / "registry")
    yield service
    service.stop()


@dataclass
class Hub:
    settings: Settings
    store: RedisStore
    registry: Service
    tmp: Path
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # login -> (cookie, csrf)

    def session(self, login: str) -> tuple[str, str]:
        """A signed-in session of ``login``, as GitHub sign-in leaves it: cookie and CSRF token."""
        if login not in self.cookies:
            response = web.Response()
            who = sign_in(response, self.settings, login, login.title())
            self.cookies[login] = (response.cookies[COOKIE].value, who.csrf)
        return self.cookies[login]

    def push(self, name: str, roots: list[str] | None = None, variant: str = "compat", padding: int = 0,
             annotations: dict[str, str] | None = None) -> Pushed:
        ref = reference.parse(f"{host_of(self.registry)}/{name}")
        made = image.build(variant, module_bytes(padding), image.Runtime(["0.2.1"], roots or ["add-header"]),
                           annotations or {})
        return push(client(self.registry, self.tmp), ref, made)


def hub_settings(tmp: Path, redis_url: str, registry: Service, **more: Any) -> Settings:
    return Settings(data_dir=tmp / "data", redis_url=redis_url, default_registry=host_of(registry),
                    log_link_key="test-log-link-key",  # replicas share it; it signs hub sessions too
                    docker_config=tmp / "no-docker-config.json", permissions=PERMISSIONS, **more)


@pytest.fixture
def hub(tmp_path: Path, redis_service: Service, own_registry: Service) -> Hub:
    redis.Redis.from_url(redis_service.url).flushdb()
    settings = hub_settings(tmp_path, redis_service.url, own_registry,
                            environments={"staging": {"platform": "envoy"}})
    celery_app.configure(settings)  # what dispatch's jobs are submitted with
    return Hub(settings, RedisStore(redis_service.url), own_registry, tmp_path)


async def fetch(hub: Hub, method: str, path: str, login: str | None = "alice",
                data: dict[str, str] | None = None, csrf: bool = True) -> tuple[int, str, dict[str, str]]:
    """One request to a fresh application as ``login`` (None: nobody signed in): status, body,
    headers.  A form gets the session's CSRF token unless ``csrf`` is False."""
    headers = {}
    form = dict(data or {})
    if login is not None:
        cookie, token = hub.session(login)
        headers["Cookie"] = f"{COOKIE}={cookie}"
        if csrf and method == "POST":
            form["csrf_token"] = token
    async with TestClient(TestServer(make_app(hub.settings))) as http:
        response = await http.request(method, path, headers=headers, data=form if method == "POST" else None,
                                      allow_redirects=False)
        return response.status, await response.text(), dict(response.headers)


def get(hub: Hub, path: str, login: str | None = "alice") -> str:
    status, body, _ = asyncio.run(fetch(hub, "GET", path, login))
    assert status == 200, body
    return body


def rows(body: str, cls: str) -> list[str]:
    """The text of each ``<tr class="CLS">`` / ``<section class="CLS">`` of a page, tags removed."""
    found = re.findall(rf'<(tr|section) class="{cls}"[^>]*>(.*?)</\1>', body, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", inner).split()) for _, inner in found]


# -- modules -------------------------------------------------------------------------------------


def test_the_modules_page_lists_every_tag_with_what_a_proxy_needs(hub: Hub) -> None:
    compat = hub.push("team/add-header:v1", ["add-header"], annotations={
        "org.opencontainers.image.created": "2026-12-01T10:00:00Z", "io.wasmbot.job": "0123456789ab"})
    oci = hub.push("team/auth:v2", ["authz", "authn"], variant="oci", padding=3000)
    hub.push("team/auth:v3", ["authz"])
    # A cosign signature of the oci image: the tag cosign pushes beside it, named by its digest.
    hub.push(f"team/auth:sha256-{oci.digest.removeprefix('sha256:')}.sig")
    catalogue.refresh(hub.settings)

    body = get(hub, "/hub/modules")
    listed = rows(body, "module")
    assert len(listed) == 3, listed  # the signature tag is not a module
    host = host_of(hub.registry)
    assert listed[0].startswith("team/add-header : v1 0.2.1 add-header ")
    assert "2026-12-01T10:00:00Z" in listed[0] and "unsigned" in listed[0]
    assert listed[1].startswith("team/auth : v2 0.2.1 authz, authn ")
    assert "cosign signature present (not verified)" in listed[1]
    assert "unsigned" in listed[2]
    assert f'value="wasmbot pull {host}/team/add-header:v1@{compat.digest} -o add-header.wasm"' in body
    assert f'value="wasmbot pull {host}/team/auth:v2@{oci.digest} -o auth.wasm"' in body
    sizes = re.findall(r'data-label="Size">([^<]+)<', body)
    assert sizes[1] != sizes[0] and "kB" in sizes[1], sizes  # the padded module is the larger

    page = get(hub, "/hub/modules/team/auth")
    tags = rows(page, "module")
    assert [t.split()[0] for t in tags] == ["v2", "v3"]
    assert f"/wasm deploy {host}/team/auth:v2 --env staging" in page
    assert 'href="/hub/jobs/0123456789ab"' in get(hub, "/hub/modules/team/add-header")  # who built it


def test_modules_search_matches_repository_tag_and_root_id(hub: Hub) -> None:
    hub.push("team/add-header:v1", ["add-header"])
    hub.push("team/auth:v2", ["authz"])
    hub.push("edge/ratelimit:v2-rc1", ["limiter"])
    catalogue.refresh(hub.settings)

    def found(query: str) -> list[str]:
        return [" ".join(r.split()[:3]) for r in rows(get(hub, f"/hub/modules?q={query}"), "module")]

    assert found("AUTH") == ["team/auth : v2"]  # repository, case-insensitive
    assert found("limiter") == ["edge/ratelimit : v2-rc1"]  # root id
    assert found("v2") == ["edge/ratelimit : v2-rc1", "team/auth : v2"]  # tag
    assert found("nothing") == []
    assert "No tag matches." in get(hub, "/hub/modules?q=nothing")


def test_modules_come_a_page_at_a_time(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.hub import modules

    monkeypatch.setattr(modules, "PAGE_SIZE", 2)
    for name in ("a/one:v1", "b/two:v1", "c/three:v1", "c/three:v2", "d/four:v1"):
        hub.push(name, [name.split("/")[0]])
    catalogue.refresh(hub.settings)

    first = get(hub, "/hub/modules?q=v1")
    assert [r.split()[0] for r in rows(first, "module")] == ["a/one", "b/two"]
    assert 'rel="next" href="/hub/modules?q=v1&amp;page=2"' in first and 'rel="prev"' not in first
    last = get(hub, "/hub/modules?q=v1&page=2")
    assert [r.split()[0] for r in rows(last, "module")] == ["c/three", "d/four"]
    assert 'rel="prev" href="/hub/modules?q=v1"' in last and 'rel="next"' not in last
    assert asyncio.run(fetch(hub, "GET", "/hub/modules?page=x"))[0] == 400


def test_pages_render_from_the_store_and_a_refresh_reads_only_changed_tags(hub: Hub) -> None:
    hub.push("team/add-header:v1", ["add-header"])
    hub.push("team/auth:v2", ["authz"])
    catalogue.refresh(hub.settings)

    def manifest_reads() -> list[str]:
        return log_lines(hub.registry, r"^GET /v2/.*/manifests/")

    requests_before = len(log_lines(hub.registry, "."))
    get(hub, "/hub/modules")
    get(hub, "/hub/modules/team/auth")
    assert len(log_lines(hub.registry, ".")) == requests_before  # a fresh catalogue: no registry request

    moved = hub.push("team/auth:v2", ["authz", "second"], padding=10)
    before = len(manifest_reads())
    catalogue.refresh(hub.settings)
    reads = manifest_reads()[before:]
    assert reads == ["GET /v2/team/auth/manifests/v2 200"], reads  # add-header:v1 only had its HEAD
    entry = next(e for e in catalogue.load(hub.settings).entries if e.repository == "team/auth")  # type: ignore[union-attr]
    assert (entry.digest, entry.root_ids) == (moved.digest, ["authz", "second"])


def test_a_stale_catalogue_is_shown_while_it_is_read_again(hub: Hub) -> None:
    hub.push("team/add-header:v1")
    settings = hub.settings.model_copy(update={"hub_catalogue_refresh": 0.001})
    first = catalogue.refresh(settings)
    hub.push("team/late:v1")

    async def page_then_refresh() -> tuple[catalogue.Catalogue | None, catalogue.Catalogue]:
        shown = await catalogue.current(settings)
        running = catalogue._running[str(settings.default_registry)]
        return shown, await running

    shown, refreshed = asyncio.run(page_then_refresh())
    assert shown is not None and shown.read_at == first.read_at  # the page did not wait
    assert refreshed.repositories() == ["team/add-header", "team/late"]


def test_a_registry_that_fails_keeps_the_last_catalogue_and_says_why(hub: Hub) -> None:
    hub.push("team/add-header:v1")
    catalogue.refresh(hub.settings)
    hub.registry.stop()
    settings = hub.settings.model_copy(update={"registry_retries": 0})
    catalogue.refresh(settings)
    body = get(hub, "/hub/modules")
    assert len(rows(body, "module")) == 1
    assert re.search(r"The last read failed: registry 127\.0\.0\.1:\d+ is unreachable", body), body


def test_a_repository_that_cannot_be_read_keeps_its_last_entries(hub: Hub) -> None:
    hub.push("team/add-header:v1")
    hub.push("team/auth:v1")
    catalogue.refresh(hub.settings)
    # The registry still lists the repository but can no longer list its tags (404 NAME_UNKNOWN).
    storage = hub.tmp / "registry" / "data" / "docker" / "registry" / "v2" / "repositories"
    shutil.rmtree(storage / "team" / "auth" / "_manifests" / "tags")
    hub.push("team/add-header:v2")
    catalogue.refresh(hub.settings)
    body = get(hub, "/hub/modules")
    assert [" ".join(r.split()[:3]) for r in rows(body, "module")] == [
        "team/add-header : v1", "team/add-header : v2", "team/auth : v1"]
    assert "1 of 2 repositories could not be read (shown as last read); the first: registry" in body
    assert "team/auth" in body.split("The last read failed:")[1]


# -- environments --------------------------------------------------------------------------------


def deployed(hub: Hub, env: str, pushed: Pushed, job: str, by: str, approver: str = "", at: float = 0.0,
             action: str = "deploy", root_id: str = "", config: str = "") -> None:
    """A deploy record as the deploy stage writes it (workers/stages/deploy.py ``_record``)."""
    hub.store.record_deploy({
        "action": action, "environment": env, "filter": pushed.reference.rsplit("/", 1)[1].split(":")[0],
        "job": job, "requester": by, "approver": approver, "at": str(at), "image": pushed.pinned,
        "digest": pushed.digest, "resource": "Envoy bootstrap", "root_id": root_id, "config": config,
        "intent": "{}"})


def test_environments_show_what_is_deployed_who_deployed_and_who_approved(hub: Hub) -> None:
    v1 = hub.push("team/add-header:v1")
    v2 = hub.push("team/add-header:v2", padding=5, annotations={"io.wasmbot.job": "bbbbbbbbbbb2"})
    deployed(hub, "staging", v1, "aaaaaaaaaaa1", "github:alice", at=1000.0)
    deployed(hub, "staging", v2, "aaaaaaaaaaa2", "slack:U1", approver="github:bob", at=2000.0)
    deployed(hub, "prod", v1, "aaaaaaaaaaa3", "github:alice", approver="github:bob", at=1500.0)
    catalogue.refresh(hub.settings)  # which build made each digest

    body = get(hub, "/hub/environments")
    sections = rows(body, "environment")
    assert [s.split()[0] for s in sections] == ["prod", "staging"]
    assert f"add-header {v1.reference} {v1.digest}" in sections[0] and "github:bob" in sections[0]
    assert f"add-header {v2.reference} {v2.digest}" in sections[1]
    assert "slack:U1 github:bob aaaaaaaaaaa2 job bbbbbbbbbbb2" in sections[1]  # and the build that made it
    assert "aaaaaaaaaaa3 —" in sections[0]  # v1 was not pushed by a wasmbot job
    assert v1.digest not in sections[1]  # replaced: history only
    assert 'href="/hub/modules/team/add-header"' in body  # the module page of what runs

    page = get(hub, "/hub/environments/staging")
    history = re.findall(r"<tr>\s*<td data-label=\"When\">.*?</tr>", page, re.S)
    assert len(history) == 2 and "aaaaaaaaaaa2" in history[0] and "aaaaaaaaaaa1" in history[1]
    assert "Roll back to this" not in history[0] and "Roll back to this" in history[1]  # alice may deploy there


def test_rollback_deploys_the_earlier_digest_through_the_chat_command(hub: Hub) -> None:
    v1 = hub.push("team/add-header:v1")
    v2 = hub.push("team/add-header:v2", padding=5)
    deployed(hub, "staging", v1, "aaaaaaaaaaa1", "github:alice", at=1000.0, root_id="add-header",
             config='{"header": "x-a b"}')
    deployed(hub, "staging", v2, "aaaaaaaaaaa2", "github:alice", at=2000.0)

    status, _, headers = asyncio.run(fetch(hub, "POST", "/hub/environments/staging/rollback", "bob",
                                           {"filter": "add-header", "digest": v1.digest}))
    assert status == 303, headers
    job_id = headers["Location"].removeprefix("/hub/jobs/")
    job = hub.store.get(job_id)
    assert job is not None and job.requester == "github:bob" and job.origin == "web"
    assert job.text == (f"/wasm deploy {v1.reference.split(':v1')[0]}:v1@{v1.digest} --env staging "
                        """--root-id add-header --config '{"header": "x-a b"}'""")
    assert job.command.model_dump() == {  # what chat's parser made of it
        "name": "deploy", "target": f"{v1.reference}@{v1.digest}", "env": "staging",
        "config": '{"header": "x-a b"}', "root_id": "add-header", "dry_run": False, "force": False,
        "adopt": False}
    assert job.state is State.QUEUED

    gone = asyncio.run(fetch(hub, "POST", "/hub/environments/staging/rollback", "bob",
                             {"filter": "add-header", "digest": v2.digest}))  # what runs now
    assert gone[0] == 409 and "no earlier deploy" in gone[1]


def test_who_may_not_deploy_sees_no_rollback_and_is_refused(hub: Hub) -> None:
    v1 = hub.push("team/add-header:v1")
    v2 = hub.push("team/add-header:v2", padding=5)
    deployed(hub, "staging", v1, "aaaaaaaaaaa1", "github:alice", at=1000.0)
    deployed(hub, "staging", v2, "aaaaaaaaaaa2", "github:alice", at=2000.0)
    jobs_before = len(hub.store.recent(100))

    page = get(hub, "/hub/environments/staging", login="carol")
    assert "Roll back to this" not in page
    assert "You may not roll back here: you may not deploy:staging" in page
    form = {"filter": "add-header", "digest": v1.digest}
    status, body, _ = asyncio.run(fetch(hub, "POST", "/hub/environments/staging/rollback", "carol", form))
    assert status == 403 and "you may not deploy:staging" in body
    anonymous = asyncio.run(fetch(hub, "POST", "/hub/environments/staging/rollback", None, form))
    assert anonymous[0] == 403
    no_token = asyncio.run(fetch(hub, "POST", "/hub/environments/staging/rollback", "bob", form, csrf=False))
    assert no_token[0] == 403
    assert len(hub.store.recent(100)) == jobs_before


# -- approvals -----------------------------------------------------------------------------------


def test_the_store_lists_the_jobs_waiting_for_an_approval(store: JobStore) -> None:
    """An indexed read (the approvals page does not scan every job), on either store."""
    def job(state: State, created: float) -> Job:
        made = Job(requester="alice", origin="web", text="/wasm deploy x --env prod", source_root="",
                   command={"name": "deploy", "target": "localhost:5000/a/b:v1", "env": "prod"},  # type: ignore[arg-type]
                   stages=[Stage(name="deploy")], state=state, created_at=created,
                   approval={"action": "deploy:prod", "expires_at": "9e9"} if state is State.PENDING else {})
        store.create(made)
        return made

    later, earlier, queued = job(State.PENDING, 2.0), job(State.PENDING, 1.0), job(State.QUEUED, 3.0)
    assert [j.id for j in store.waiting()] == [earlier.id, later.id]
    store.update(later.id, lambda j: j.approval.update(note="seen"))  # still waiting
    store.update(earlier.id, lambda j: setattr(j, "state", State.QUEUED))  # approved and queued
    assert [j.id for j in store.waiting()] == [later.id]
    store.update(later.id, lambda j: j.stop(State.CANCELLED, "denied"))
    assert store.waiting() == [] and queued.id not in [j.id for j in store.waiting()]


@pytest.fixture
def guarded(hub: Hub, kube: KubeServer) -> Hub:
    """``prod``: a protected Istio environment on the real API server."""
    kubeconfig = kube.kubeconfig(hub.tmp / "kubeconfig")
    hub.settings = hub_settings(hub.tmp, hub.store.url, hub.registry, environments={
        "staging": {"platform": "envoy"},
        "prod": {"kubeconfig": str(kubeconfig), "namespace": "shop", "protected": True}})
    celery_app.configure(hub.settings)
    return hub


def ask_for_prod(hub: Hub, pushed: Pushed, login: str = "alice") -> str:
    """``/wasm deploy`` to prod through chat's dispatch, as ``login`` on the hub would ask."""
    from bot.dispatch import Request, Requester, dispatch
    from bot.permissions import Principal
    from workers import commands

    text = f"/wasm deploy {pushed.reference} --env prod"
    who = Requester("web", f"github:{login}", Principal(f"github:{login}"))
    reply = asyncio.run(dispatch(hub.settings, Request(commands.parse(text), text, who, origin="web")))
    assert reply.job is not None and reply.job.awaiting_approval, reply.text
    return reply.job.id


def test_approvals_list_what_waits_and_an_approver_lets_it_run(guarded: Hub) -> None:
    pushed = guarded.push("team/add-header:v1")
    job_id = ask_for_prod(guarded, pushed)

    mine = get(guarded, "/hub/approvals", login="alice")
    waiting = rows(mine, "approval")
    assert len(waiting) == 1 and f"/wasm deploy {pushed.reference} --env prod" in waiting[0]
    assert pushed.digest in waiting[0] and "github:alice" in waiting[0]
    assert "+++ after this deploy: WasmPlugin shop/add-header is created" in mine  # the dry run's diff
    assert "Approve" not in waiting[0] and "you asked for this change" in waiting[0]
    own = asyncio.run(fetch(guarded, "POST", f"/hub/approvals/{job_id}/approve", "alice"))
    assert own[0] == 409 and "you asked for this change" in own[1]

    theirs = rows(get(guarded, "/hub/approvals", login="bob"), "approval")[0]
    assert "Approve" in theirs and "Deny" in theirs
    status, _, headers = asyncio.run(fetch(guarded, "POST", f"/hub/approvals/{job_id}/approve", "bob"))
    assert (status, headers["Location"]) == (303, f"/hub/jobs/{job_id}")
    job = guarded.store.get(job_id)
    assert job is not None and job.approval["approved_by"] == "github:bob"
    assert job.stage("deploy").state is State.QUEUED  # queued for a worker, as chat's approval does
    assert rows(get(guarded, "/hub/approvals", login="bob"), "approval") == []


def test_who_may_not_approve_sees_no_button_and_is_refused(guarded: Hub) -> None:
    job_id = ask_for_prod(guarded, guarded.push("team/add-header:v1"))
    waiting = rows(get(guarded, "/hub/approvals", login="carol"), "approval")[0]
    assert "Approve" not in waiting and "Deny" not in waiting
    assert "you may not approve:prod" in waiting
    for verb in ("approve", "deny"):
        status, body, _ = asyncio.run(fetch(guarded, "POST", f"/hub/approvals/{job_id}/{verb}", "carol"))
        assert status == 403 and "you may not approve:prod" in body
    job = guarded.store.get(job_id)
    assert job is not None and job.awaiting_approval


def test_deny_turns_the_change_down(guarded: Hub) -> None:
    job_id = ask_for_prod(guarded, guarded.push("team/add-header:v1"))
    status, _, headers = asyncio.run(fetch(guarded, "POST", f"/hub/approvals/{job_id}/deny", "bob"))
    assert (status, headers["Location"]) == (303, f"/hub/jobs/{job_id}")
    job = guarded.store.get(job_id)
    assert job is not None and job.state is State.CANCELLED
    assert job.stage("deploy").error == "cancelled by github:bob"


def test_the_api_servers_readiness_probe_waits_out_a_slow_answer() -> None:
    """Under load the API server may take its TLS handshake past the probe's 1 s: that is "not
    ready yet", not an error that fails the ``kube`` fixture (it did, once, in this file)."""
    import socket

    from kubeserver import _answers

    with socket.socket() as listening:  # accepts connections (the backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        assert _answers(f"https://127.0.0.1:{listening.getsockname()[1]}/healthz") is False


def test_anonymous_readers_see_the_pages_without_any_action(guarded: Hub) -> None:
    """With ``hub_anonymous_read`` the pages are readable without signing in, and read-only."""
    v1, v2 = guarded.push("team/add-header:v1"), guarded.push("team/add-header:v2", padding=5)
    deployed(guarded, "staging", v1, "aaaaaaaaaaa1", "github:alice", at=1000.0)
    deployed(guarded, "staging", v2, "aaaaaaaaaaa2", "github:alice", at=2000.0)
    ask_for_prod(guarded, v1)
    catalogue.refresh(guarded.settings)
    guarded.settings = guarded.settings.model_copy(update={"hub_anonymous_read": True})
    for path in ("/hub/modules", "/hub/environments", "/hub/environments/staging", "/hub/approvals"):
        body = get(guarded, path, login=None)
        assert "<form method=\"post\"" not in body, path
    assert "Sign in to approve or deny." in get(guarded, "/hub/approvals", login=None)
    guarded.settings = guarded.settings.model_copy(update={"hub_anonymous_read": False})
    assert asyncio.run(fetch(guarded, "GET", "/hub/approvals", None))[0] == 302  # to sign in
