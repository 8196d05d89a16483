"""Signing in to the hub with GitHub (OAuth web flow against the GitHub stand-in), its signed
and expiring session cookies, the CSRF check on every state-changing request, read-only pages
without sign-in only when the operator allows it, and permissions decided by the chat rules."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from aiohttp.test_utils import make_mocked_request
from hubhelp import CLIENT_ID, Hub, browser, make_job, serve_hub, sign_in
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from bot import permissions
from bot.hub import make_hub
from bot.hub.access import allowed
from bot.hub.session import COOKIE, VIEWER, Viewer
from workers.config import Settings


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with serve_hub(tmp_path_factory.mktemp("hub")) as served:
        yield served


@pytest.fixture(autouse=True)
def octocat_signs_in(hub: Hub) -> None:
    hub.github.signing_in, hub.github.oauth_denied = "octocat", False


def signed_in(hub: Hub, login: str = "octocat") -> requests.Session:
    """A client that went through GitHub's sign-in as ``login``."""
    hub.github.signing_in = login
    client = requests.Session()
    answer = client.get(f"{hub.url}/hub/signin/github", params={"next": "/hub/jobs"})
    assert answer.status_code == 200 and answer.url == f"{hub.url}/hub/jobs", answer.text
    return client


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match[1]


def test_pages_need_sign_in_by_default(hub: Hub) -> None:
    job = make_job(hub.store)
    for path in ("/hub/jobs", f"/hub/jobs/{job.id}", f"/hub/jobs/{job.id}/events"):
        answer = requests.get(f"{hub.url}{path}", allow_redirects=False)
        assert answer.status_code == 302, path
        location = urlsplit(answer.headers["Location"])
        assert location.path == "/hub/signin" and parse_qs(location.query)["next"] == [path]


def test_sign_in_with_github_returns_to_the_page_asked_for(hub: Hub) -> None:
    job = make_job(hub.store)
    client = requests.Session()
    page = client.get(f"{hub.url}/hub/jobs/{job.id}")  # → the sign-in page
    assert page.url.startswith(f"{hub.url}/hub/signin?")
    link = re.search(r'href="(/hub/signin/github\?[^"]+)"', page.text)
    assert link, page.text
    seen = len(hub.github.requests)
    landed = client.get(f"{hub.url}{link[1].replace('&amp;', '&')}")
    assert landed.status_code == 200 and landed.url == f"{hub.url}/hub/jobs/{job.id}"
    assert "The Octocat" in landed.text and "Sign out" in landed.text

    calls = hub.github.requests[seen:]
    authorize, exchange, user = calls
    assert (authorize.method, authorize.path) == ("GET", "/login/oauth/authorize")
    assert (exchange.method, exchange.path) == ("POST", "/login/oauth/access_token")
    assert exchange.headers["Accept"] == "application/json"
    assert (user.method, user.path) == ("GET", "/user")
    assert user.headers["Authorization"].startswith("Bearer gho_")  # the user's token, not wasmbot's
    query = parse_qs(urlsplit(landed.history[0].headers["Location"]).query)
    assert query["client_id"] == [CLIENT_ID] and len(query["state"][0]) >= 32
    assert query["redirect_uri"] == [f"{hub.url}/hub/oauth/callback"]

    cookie = landed.history[-1].headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=28800" in cookie and "Path=/hub" in cookie


def test_sign_in_never_sends_the_browser_off_the_hub(hub: Hub) -> None:
    for target in ("https://evil.example/", "//evil.example/hub/", "/hub/\\evil.example", "/metrics"):
        landed = requests.Session().get(f"{hub.url}/hub/signin/github", params={"next": target})
        assert landed.url == f"{hub.url}/hub/jobs", target


def test_a_callback_the_hub_did_not_start_is_refused(hub: Hub) -> None:
    victim = requests.Session()
    # Someone else's sign-in (a state this browser was never given) lands in the victim's browser.
    forged = victim.get(f"{hub.github.url}/login/oauth/authorize",
                        params={"client_id": CLIENT_ID, "state": "attackers-state"})
    assert forged.status_code == 403 and "was not started here" in forged.text
    assert COOKIE not in victim.cookies
    assert victim.get(f"{hub.url}/hub/jobs", allow_redirects=False).status_code == 302


def test_a_sign_in_link_works_once(hub: Hub) -> None:
    client = requests.Session()
    started = client.get(f"{hub.url}/hub/signin/github", allow_redirects=False)
    at_github = client.get(started.headers["Location"], allow_redirects=False)
    callback = at_github.headers["Location"]
    assert client.get(callback).url == f"{hub.url}/hub/jobs"
    client.cookies.clear()
    again = client.get(callback)
    assert again.status_code == 403 and COOKIE not in client.cookies


def test_a_refused_sign_in_says_why(hub: Hub) -> None:
    hub.github.oauth_denied = True
    answer = requests.get(f"{hub.url}/hub/signin/github")
    assert answer.status_code == 403
    assert "The user has denied your application access." in answer.text


def test_posts_without_the_csrf_token_are_refused(hub: Hub) -> None:
    client = signed_in(hub)
    token = csrf_token(client.get(f"{hub.url}/hub/jobs").text)
    for data, headers in (({}, {}), ({"csrf_token": "not-the-token"}, {}), ({}, {"X-CSRF-Token": "x" * 43})):
        refused = client.post(f"{hub.url}/hub/signout", data=data, headers=headers, allow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert client.get(f"{hub.url}/hub/jobs", allow_redirects=False).status_code == 200  # still signed in
    anonymous = requests.post(f"{hub.url}/hub/signout", data={"csrf_token": token}, allow_redirects=False)
    assert anonymous.status_code == 403  # a token without its session is worth nothing
    out = client.post(f"{hub.url}/hub/signout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status_code == 302 and out.headers["Location"] == "/hub/signin"
    assert client.get(f"{hub.url}/hub/jobs", allow_redirects=False).status_code == 302


def test_a_session_cookie_expires_and_cannot_be_forged(hub: Hub) -> None:
    key = (hub.data_dir / "log-link.key").read_text().strip()  # no hub_session_secret: the links' key
    session = {"login": "octocat", "name": "x", "csrf": "t", "issued": 0}

    class HourAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 8 * 3600 - 60

    cookies = {
        "fresh": URLSafeTimedSerializer(key, salt="wasmbot-hub-session").dumps(session),
        "expired": URLSafeTimedSerializer(key, salt="wasmbot-hub-session", signer=HourAgo).dumps(session),
        "other key": URLSafeTimedSerializer("not-the-key", salt="wasmbot-hub-session").dumps(session),
        "other purpose": URLSafeTimedSerializer(key, salt="wasmbot-hub-oauth").dumps(session),
    }
    status = {name: requests.get(f"{hub.url}/hub/jobs", cookies={COOKIE: value}, allow_redirects=False).status_code
              for name, value in cookies.items()}
    assert status == {"fresh": 200, "expired": 302, "other key": 302, "other purpose": 302}


def test_anonymous_reading_only_when_the_operator_allows_it(tmp_path: Path) -> None:
    with serve_hub(tmp_path, {"WASMBOT_HUB_ANONYMOUS_READ": "true"}) as open_hub:
        job = make_job(open_hub.store)
        page = requests.get(f"{open_hub.url}/hub/jobs/{job.id}", allow_redirects=False)
        assert page.status_code == 200 and job.id in page.text and "Sign in" in page.text
        assert 'name="csrf_token"' not in page.text
        refused = requests.post(f"{open_hub.url}/hub/signout", allow_redirects=False)
        assert refused.status_code == 403 and "sign in" in refused.text


def test_hub_permissions_are_the_chat_rules(tmp_path: Path) -> None:
    rules = {"deploy:prod": ["user:github:octocat", "group:S0SRE"], "cancel": ["requester"]}
    settings = Settings(data_dir=tmp_path, permissions=rules, people={"alice": ["slack:U0A", "github:alice"]})

    async def decide(login: str, action: str, owner: str | None = None) -> tuple[str | None, str | None]:
        request = make_mocked_request("GET", "/hub/jobs", app=make_hub(settings))
        request[VIEWER] = Viewer(login=login, name=login, csrf="t", issued=0)
        chat = await permissions.check(permissions.policy_of(settings), action,
                                       permissions.Principal(f"github:{login}"), front_end="web", owner=owner)
        return await allowed(request, action, owner), chat

    cases = [("OctoCat", "deploy:prod", None), ("mallory", "deploy:prod", None),
             ("alice", "cancel", "slack:U0A"), ("mallory", "cancel", "slack:U0A"), ("mallory", "approve:prod", None)]
    decided = {case: asyncio.run(decide(*case)) for case in cases}
    assert all(hub_says == chat_says for hub_says, chat_says in decided.values()), decided
    assert [hub_says is None for hub_says, _ in decided.values()] == [True, False, True, False, False]
    assert "nobody may approve:prod" in str(decided[("mallory", "approve:prod", None)][0])


def test_browser_sign_in_and_a_form_post_without_its_token(hub: Hub) -> None:
    with browser() as chromium:
        page = chromium.new_page()
        sign_in(page, hub)
        assert page.get_by_text("The Octocat").is_visible()
        status = page.evaluate("fetch('/hub/signout', {method: 'POST'}).then(r => r.status)")
        assert status == 403
        page.reload()
        page.get_by_role("button", name="Sign out").click()  # the form sends its token
        page.wait_for_url(f"{hub.url}/hub/signin")
        assert page.get_by_role("link", name="Sign in with GitHub").is_visible()


def test_a_view_rule_limits_who_may_read(tmp_path: Path) -> None:
    rules = '{"view": ["user:github:octocat"]}'
    with serve_hub(tmp_path, {"WASMBOT_PERMISSIONS": rules}) as limited:
        assert signed_in(limited, "octocat").get(f"{limited.url}/hub/jobs").status_code == 200
        refused = signed_in_anywhere(limited, "mallory").get(f"{limited.url}/hub/jobs")
        assert refused.status_code == 403 and "you may not view" in refused.text
        assert "Sign out" in refused.text  # mallory can still sign out


def signed_in_anywhere(hub: Hub, login: str) -> requests.Session:
    """Signed in as ``login``, wherever the sign-in lands."""
    hub.github.signing_in = login
    client = requests.Session()
    client.get(f"{hub.url}/hub/signin/github")
    assert COOKIE in client.cookies
    return client


def test_replicas_sharing_the_link_key_accept_each_others_sessions(tmp_path: Path) -> None:
    """With no hub_session_secret the session key is the shared log-link key, so a cookie made
    by one replica (its own data directory) is read by another; with Redis and no shared key,
    sign-in is off with a message saying what to set rather than a cookie one replica refuses."""
    from aiohttp import web

    from bot.hub.session import serializer

    redis = "redis://127.0.0.1:1/0"
    one, other = (Settings(data_dir=tmp_path / name, redis_url=redis, log_link_key="shared")
                  for name in ("a", "b"))
    cookie = serializer(one, "session").dumps({"login": "octocat"})
    assert serializer(other, "session").loads(cookie) == {"login": "octocat"}
    stranger = Settings(data_dir=tmp_path / "c", redis_url=redis, log_link_key="another")
    with pytest.raises(BadSignature):
        serializer(stranger, "session").loads(cookie)
    with pytest.raises(web.HTTPServiceUnavailable) as off:
        serializer(Settings(data_dir=tmp_path / "d", redis_url=redis), "session")
    assert "WASMBOT_LOG_LINK_KEY" in off.value.text and "WASMBOT_HUB_SESSION_SECRET" in off.value.text
