"""A local stand-in for GitHub's REST API: what wasmbot calls, in GitHub's own shapes.

The real PyGithub client talks to it through ``base_url``.  It keeps repositories (files per
commit, refs, Git Data objects), pull requests, issue comments and reactions, check runs (with
every edit), releases and their assets, and GitHub App installations (installation tokens are
minted only for a JWT signed by the App's key).  ``fail`` queues answers such as 502 or a
secondary rate limit for matching requests.  Like GitHub, API answers to GET carry an ``ETag``
and a matching ``If-None-Match`` is answered 304 Not Modified.  ``requests`` records every call
with its headers, answer status and time.  Tests wait on a condition, never by sleeping.

It also plays GitHub's sign-in for OAuth apps (the web application flow): ``add_oauth_app``
registers an app's client id, secret and callback URL; ``GET /login/oauth/authorize`` sends the
browser back to the callback with a one-time ``code`` and the caller's ``state``, as if
``signing_in`` (a login) had approved the app, or with ``error=access_denied`` when
``oauth_denied``; ``POST /login/oauth/access_token`` exchanges the code for a user token (JSON
with ``Accept: application/json``, else a form, as GitHub answers; errors such as
``bad_verification_code`` come with status 200); ``GET /user`` with that token names the user.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import io
import itertools
import json
import re
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import githubcontract
import jwt
import webhookcontract
from aiohttp import web
from apicontract import contract_middleware, record
from loopback import LoopbackServer

TOKEN = "ghp_wasmbot_test_token"
WEBHOOK_SECRET = "webhook-secret-for-tests"


def webhook_headers(event: str, raw: bytes, *, delivery: str, secret: str | None = WEBHOOK_SECRET,
                    payload: bool = True) -> dict[str, str]:
    """The headers GitHub sends with a delivery; ``X-Hub-Signature-256`` unless ``secret`` is None.

    ``raw`` is checked against GitHub's webhook schemas (tests/webhookcontract.py), unless a test
    sends a deliberately malformed body (``payload=False``).
    """
    if payload:
        try:
            problems = webhookcontract.check(event, json.loads(raw))
        except Exception as exc:  # not JSON, or apicontract.SpecMissing: an unchecked delivery must not pass
            problems = [f"not checked: {type(exc).__name__}: {exc}"]
        record("webhooks", f"webhook delivery {event} {delivery}", problems)
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return headers


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    at: float = 0.0  # time.time() when it arrived


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class GitHubStandIn(LoopbackServer):
    def __init__(self) -> None:
        self.tokens = {TOKEN}
        self.user = "wasmbot-user"
        self.app_id: int | None = None
        self.app_public_key: str | None = None
        self.installations: dict[str, int] = {}  # owner -> installation id
        self.tokens_minted = 0
        self.repos: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> sha -> path -> bytes
        self.refs: dict[str, dict[str, str]] = {}  # repo -> ref -> sha
        self.objects: dict[str, dict[str, Any]] = {}  # git blobs, trees, commits by sha
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.reactions: list[tuple[int, str]] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.check_edits: dict[int, list[dict[str, Any]]] = {}
        self.releases: dict[int, dict[str, Any]] = {}
        self.assets: dict[int, dict[str, Any]] = {}
        self.topics: dict[str, list[str]] = {}
        self.faults: list[Fault] = []
        self.gates: dict[str, asyncio.Event] = {}  # path regex -> held until set
        self.calls: list[tuple[str, str]] = []
        self.requests: list[Call] = []
        self._ids = itertools.count(1000)
        self._changed = threading.Condition()
        # OAuth web flow: apps by client id, who signs in, codes not yet exchanged, user tokens.
        self.oauth_apps: dict[str, dict[str, str]] = {}
        self.signing_in = "octocat"
        self.names: dict[str, str] = {"octocat": "The Octocat"}
        self.oauth_denied = False
        self.codes: dict[str, dict[str, str]] = {}  # code -> client_id, login, redirect_uri, expires
        self.user_tokens: dict[str, str] = {}  # token -> login

    # -- lifecycle ---------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        checked = contract_middleware("github", githubcontract.check_request)  # every call against the spec
        app = web.Application(middlewares=[checked, self._middleware], client_max_size=64 * 2**20)
        app.router.add_route("*", "/{path:.*}", self._route)
        return app

    # -- test set-up -------------------------------------------------------------------------------

    def add_repo(self, full_name: str, files: dict[str, bytes], *, private: bool = False) -> str:
        """A repository whose default branch ``main`` holds ``files``; returns the commit sha."""
        owner, name = full_name.split("/")
        self.repos[full_name] = {
            "id": next(self._ids), "name": name, "full_name": full_name, "private": private,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "html_url": f"https://github.example/{full_name}", "url": f"{self.url}/repos/{full_name}",
            "default_branch": "main", "topics": [], "fork": False,
        }
        self.files[full_name] = {}
        self.refs[full_name] = {}
        sha = self.add_commit(full_name, files)
        self.refs[full_name]["heads/main"] = sha
        return sha

    def add_commit(self, full_name: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(json.dumps(sorted((k, v.hex()) for k, v in files.items())).encode()
                           + str(next(self._ids)).encode()).hexdigest()
        self.files[full_name][sha] = dict(files)
        return sha

    def add_pull(self, payload: dict[str, Any]) -> None:
        pr = copy.deepcopy(payload["pull_request"])
        self.pulls[(payload["repository"]["full_name"], pr["number"])] = pr

    def add_comment(self, full_name: str, number: int, body: str, login: str) -> dict[str, Any]:
        """A comment someone wrote on issue or pull request ``number``."""
        cid = next(self._ids)
        self.comments[cid] = {"id": cid, "body": body, "user": {"login": login, "type": "User"},
                              "url": f"{self.url}/repos/{full_name}/issues/comments/{cid}",
                              "_issue": (full_name, number), "_edits": 0}
        return self.comments[cid]

    def add_release(self, full_name: str, release: dict[str, Any]) -> None:
        release = copy.deepcopy(release)
        rid = release["id"]
        release["url"] = f"{self.url}/repos/{full_name}/releases/{rid}"
        release["assets_url"] = f"{release['url']}/assets"
        release["upload_url"] = f"{self.url}/_uploads/repos/{full_name}/releases/{rid}/assets{{?name,label}}"
        release["assets"] = []
        self.releases[rid] = release
        self.refs[full_name][f"tags/{release['tag_name']}"] = self.refs[full_name]["heads/main"]

    def add_oauth_app(self, client_id: str, client_secret: str, callback_url: str) -> None:
        self.oauth_apps[client_id] = {"secret": client_secret, "callback": callback_url}

    def fail(self, method: str, path: str, status: int, times: int = 1, **headers: str) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex with ``status``."""
        body = {"message": "You have exceeded a secondary rate limit"} if status in (403, 429) else \
            {"message": "Server Error"}
        self.faults.append(Fault(method, re.compile(path), status, times, headers, body))

    def hold(self, path: str) -> Callable[[], None]:
        """Keep requests matching the ``path`` regex waiting until the returned function is called."""
        gate = asyncio.Event()
        self.gates[path] = gate
        return lambda: self.loop.call_soon_threadsafe(gate.set)

    def recent_calls(self) -> str:
        return str(self.calls[-30:])

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self._changed:
            return [c for c in self.comments.values() if c["_issue"] == (repo, number)]

    # -- the API ------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        call = Call(request.method, request.path, dict(request.headers), at=time.time())
        with self._changed:
            self.calls.append((request.method, request.path))
            self.requests.append(call)
            for fault in self.faults:
                if fault.times > 0 and fault.method == request.method and fault.path.search(request.path):
                    fault.times -= 1
                    call.status = fault.status
                    self._changed.notify_all()
                    return web.json_response(fault.body, status=fault.status, headers=fault.headers)
            gates = [g for path, g in self.gates.items() if re.search(path, request.path)]
        for gate in gates:
            await gate.wait()
        try:
            response: web.StreamResponse = await handler(request)
            call.status = response.status
        except web.HTTPException as exc:
            call.status = exc.status
            raise
        finally:
            with self._changed:
                self._changed.notify_all()
        return response

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() in ("token", "bearer") and value in self.tokens

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith("/_archive/"):
            return self._archive(path)
        if path == "/login/oauth/authorize" and method == "GET":
            return self._authorize(request)
        if path == "/login/oauth/access_token" and method == "POST":
            return await self._access_token(request)
        if method == "POST" and (m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)):
            return self._mint(request, int(m[1]))
        if method == "GET" and (m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/installation", path)):
            return self._installation_of(request, m[1])
        if not self._authorised(request):
            return _error(401, "Bad credentials")
        if path.startswith("/_uploads/") and method == "POST":
            return await self._upload(request)
        body: Any = None
        if request.can_read_body:
            body = await request.json()
        with self._changed:
            answer = await self._api(request, method, path, body)
        return _conditional(request, answer)

    def _authorize(self, request: web.Request) -> web.Response:
        """The user approves the app (or not) and is sent back to its callback URL."""
        app = self.oauth_apps.get(request.query.get("client_id", ""))
        if app is None:
            return web.Response(status=404, text="Not Found")  # GitHub shows its 404 page
        redirect = request.query.get("redirect_uri") or app["callback"]
        back: dict[str, str] = {}
        if not _under(redirect, app["callback"]):
            back = {"error": "redirect_uri_mismatch",
                    "error_description": "The redirect_uri MUST match the registered callback URL for this application."}
            redirect = app["callback"]
        elif self.oauth_denied:
            back = {"error": "access_denied",
                    "error_description": "The user has denied your application access."}
        else:
            code = hashlib.sha256(str(next(self._ids)).encode()).hexdigest()[:20]
            with self._changed:
                self.codes[code] = {"client_id": request.query["client_id"], "login": self.signing_in,
                                    "redirect_uri": request.query.get("redirect_uri", ""),
                                    "expires": str(time.time() + 600)}  # GitHub: codes expire after 10 minutes
            back = {"code": code}
        if "state" in request.query:
            back["state"] = request.query["state"]
        raise web.HTTPFound(f"{redirect}{'&' if '?' in redirect else '?'}{urllib.parse.urlencode(back)}")

    async def _access_token(self, request: web.Request) -> web.Response:
        """A code, once, for a user token; failures are 200 with an ``error``, as on GitHub."""
        params: dict[str, str] = dict(request.query)
        if request.content_type == "application/json":
            params |= await request.json()
        else:
            params |= {k: str(v) for k, v in (await request.post()).items()}
        app = self.oauth_apps.get(params.get("client_id", ""))
        with self._changed:
            grant = self.codes.pop(params.get("code", ""), None)
        answer: dict[str, str]
        if app is None or not hmac.compare_digest(app["secret"], params.get("client_secret", "")):
            answer = {"error": "incorrect_client_credentials",
                      "error_description": "The client_id and/or client_secret passed are incorrect."}
        elif grant is None or grant["client_id"] != params["client_id"] or float(grant["expires"]) < time.time():
            answer = {"error": "bad_verification_code",
                      "error_description": "The code passed is incorrect or expired."}
        elif params.get("redirect_uri", grant["redirect_uri"]) != grant["redirect_uri"]:
            answer = {"error": "redirect_uri_mismatch",
                      "error_description": "The redirect_uri MUST match the registered callback URL for this application."}
        else:
            token = f"gho_{hashlib.sha256(str(next(self._ids)).encode()).hexdigest()[:36]}"
            with self._changed:
                self.tokens.add(token)
                self.user_tokens[token] = grant["login"]
            answer = {"access_token": token, "scope": "", "token_type": "bearer"}
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response(answer)
        return web.Response(text=urllib.parse.urlencode(answer), content_type="application/x-www-form-urlencoded")

    def _mint(self, request: web.Request, installation: int) -> web.Response:
        value = request.headers.get("Authorization", "").partition(" ")[2]
        try:
            claims = jwt.decode(value, self.app_public_key, algorithms=["RS256"])
        except (jwt.PyJWTError, TypeError):
            return _error(401, "A JSON web token could not be decoded")
        if str(claims.get("iss")) != str(self.app_id) or installation not in self.installations.values():
            return _error(404, "Not Found")
        token = f"ghs_{hashlib.sha256(str(next(self._ids)).encode()).hexdigest()[:36]}"
        with self._changed:
            self.tokens.add(token)
            self.tokens_minted += 1
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return web.json_response({"token": token, "expires_at": expires, "permissions": {}}, status=201)

    def _installation_of(self, request: web.Request, owner: str) -> web.Response:
        if owner not in self.installations:
            return _error(404, "Not Found")
        return web.json_response({"id": self.installations[owner], "app_id": self.app_id,
                                  "account": {"login": owner}})

    def _archive(self, path: str) -> web.Response:
        m = re.fullmatch(r"/_archive/([^/]+)/([^/]+)/([0-9a-f]+)\.tar\.gz", path)
        if not m or f"{m[1]}/{m[2]}" not in self.files or m[3] not in self.files[f"{m[1]}/{m[2]}"]:
            return _error(404, "Not Found")
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as archive:
            top = f"{m[1]}-{m[2]}-{m[3][:7]}"
            for name, content in sorted(self.files[f"{m[1]}/{m[2]}"][m[3]].items()):
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        return web.Response(body=data.getvalue(), content_type="application/x-gzip")

    async def _api(self, request: web.Request, method: str, path: str, body: Any) -> web.StreamResponse:
        if method == "GET" and path == "/user":
            login = self.user_tokens.get(request.headers.get("Authorization", "").partition(" ")[2], self.user)
            return web.json_response({"login": login, "id": 7, "type": "User", "name": self.names.get(login),
                                      "url": f"{self.url}/users/{login}"})
        if m := re.fullmatch(r"/orgs/([^/]+)", path):
            return web.json_response({"login": m[1], "id": 9, "url": f"{self.url}/orgs/{m[1]}"})
        if method == "POST" and (m := re.fullmatch(r"/orgs/([^/]+)/repos|/user/repos", path)):
            owner = m[1] or self.user
            full = f"{owner}/{body['name']}"
            if full in self.repos:
                return _error(422, "Repository creation failed.",
                              [{"resource": "Repository", "field": "name", "code": "custom",
                                "message": "name already exists on this account"}])
            self.add_repo(full, {"README.md": f"# {body['name']}\n".encode()} if body.get("auto_init") else {})
            if not body.get("auto_init"):
                self.refs[full] = {}
            self.repos[full]["description"] = body.get("description")
            return web.json_response(self.repos[full], status=201)
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m:
            return _error(404, "Not Found")
        repo, rest = m[1], m[2] or ""
        if repo not in self.repos:
            return _error(404, "Not Found")
        return self._repo_api(request, method, repo, rest, body) or _error(404, "Not Found")

    def _repo_api(self, request: web.Request, method: str, repo: str, rest: str, body: Any) -> Any:
        base = f"{self.url}/repos/{repo}"
        if rest == "" and method == "GET":
            return web.json_response(self.repos[repo])
        if method == "GET" and (m := re.fullmatch(r"/tarball/(.+)", rest)):
            sha = self.refs[repo].get(f"heads/{m[1]}", m[1])
            if sha not in self.files[repo]:
                return _error(404, "Not Found")
            raise web.HTTPFound(f"{self.url}/_archive/{repo}/{sha}.tar.gz")
        if method == "GET" and (m := re.fullmatch(r"/commits/(.+)", rest)):
            ref = m[1]
            sha = self.refs[repo].get(f"tags/{ref}") or self.refs[repo].get(f"heads/{ref}") or ref
            if sha not in self.files[repo]:
                return _error(422, f"No commit found for SHA: {ref}")
            return web.json_response({"sha": sha, "url": f"{base}/commits/{sha}"})
        if method == "GET" and (m := re.fullmatch(r"/pulls/(\d+)", rest)):
            pr = self.pulls.get((repo, int(m[1])))
            return web.json_response(pr) if pr else None
        if m := re.fullmatch(r"/issues/(\d+)", rest):
            number = int(m[1])
            return web.json_response({"number": number, "id": number, "url": f"{base}/issues/{number}",
                                      "html_url": f"https://github.example/{repo}/pull/{number}",
                                      "title": "a pull request", "state": "open",
                                      "user": {"login": "someone"}, "labels": [], "comments": 0})
        if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
            number = int(m[1])
            if method == "POST":
                cid = next(self._ids)
                self.comments[cid] = {"id": cid, "body": body["body"], "user": {"login": "wasmbot[bot]",
                                      "type": "Bot"}, "url": f"{base}/issues/comments/{cid}",
                                      "html_url": f"https://github.example/{repo}/pull/{number}#c{cid}",
                                      "_issue": (repo, number), "_edits": 0}
                return web.json_response(_public(self.comments[cid]), status=201)
            return web.json_response([_public(c) for c in self.comments.values() if c["_issue"] == (repo, number)])
        if m := re.fullmatch(r"/issues/comments/(\d+)(/reactions)?", rest):
            comment = self.comments.get(int(m[1]))
            if comment is None:
                return None
            if m[2] and method == "POST":
                self.reactions.append((comment["id"], body["content"]))
                return web.json_response({"id": next(self._ids), "content": body["content"],
                                          "user": {"login": self.user}}, status=201)
            if method == "PATCH":
                comment["body"] = body["body"]
                comment["_edits"] += 1
            return web.json_response(_public(comment))
        if rest == "/check-runs" and method == "POST":
            rid = next(self._ids)
            run = body | {"id": rid, "url": f"{base}/check-runs/{rid}",
                          "html_url": f"https://github.example/{repo}/runs/{rid}", "_repo": repo}
            self.check_runs[rid] = run
            self.check_edits[rid] = [copy.deepcopy(body)]
            return web.json_response(_public(run), status=201)
        if m := re.fullmatch(r"/check-runs/(\d+)", rest):
            run = self.check_runs.get(int(m[1]))
            if run is None:
                return None
            if method == "PATCH":
                run.update(body)
                self.check_edits[run["id"]].append(copy.deepcopy(body))
            return web.json_response(_public(run))
        if m := re.fullmatch(r"/releases/(\d+)(/assets)?", rest):
            release = self.releases.get(int(m[1]))
            if release is None:
                return None
            return web.json_response(release["assets"] if m[2] else release)
        if method == "DELETE" and (m := re.fullmatch(r"/releases/assets/(\d+)", rest)):
            for release in self.releases.values():
                release["assets"] = [a for a in release["assets"] if a["id"] != int(m[1])]
            return web.Response(status=204)
        if rest == "/topics" and method == "PUT":
            self.topics[repo] = body["names"]
            return web.json_response({"names": body["names"]})
        return self._git_api(method, repo, rest, body)

    def _git_api(self, method: str, repo: str, rest: str, body: Any) -> Any:
        base = f"{self.url}/repos/{repo}"
        if rest.startswith("/git/") and not self.refs[repo]:
            return _error(409, "Git Repository is empty.")
        if method == "POST" and rest == "/git/blobs":
            content = base64.b64decode(body["content"]) if body.get("encoding") == "base64" else \
                body["content"].encode()
            sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
            self.objects[sha] = {"type": "blob", "content": content}
            return web.json_response({"sha": sha, "url": f"{base}/git/blobs/{sha}"}, status=201)
        if method == "POST" and rest == "/git/trees":
            sha = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
            self.objects[sha] = {"type": "tree", "tree": body["tree"]}
            return web.json_response({"sha": sha, "url": f"{base}/git/trees/{sha}", "tree": body["tree"]},
                                     status=201)
        if method == "POST" and rest == "/git/commits":
            tree = self.objects.get(body["tree"])
            if tree is None:
                return _error(422, "Tree SHA does not exist")
            files = {e["path"]: self.objects[e["sha"]]["content"] for e in tree["tree"]}
            sha = self.add_commit(repo, files)
            self.objects[sha] = {"type": "commit", "message": body["message"], "parents": body["parents"]}
            return web.json_response({"sha": sha, "url": f"{base}/git/commits/{sha}", "message": body["message"],
                                      "parents": [{"sha": p} for p in body["parents"]],
                                      "tree": {"sha": body["tree"]}}, status=201)
        if m := re.fullmatch(r"/git/(refs?)/(.+)", rest):
            ref = m[2]
            if ref not in self.refs[repo] or (m[1] == "ref") != (method == "GET"):
                return None  # GitHub reads one ref at git/ref/REF and updates it at git/refs/REF
            if method == "PATCH":
                if not body.get("force") and body["sha"] != self.refs[repo][ref]:
                    return _error(422, "Update is not a fast forward")
                self.refs[repo][ref] = body["sha"]
            return web.json_response({"ref": f"refs/{ref}", "url": f"{base}/git/refs/{ref}",
                                      "object": {"sha": self.refs[repo][ref], "type": "commit"}})
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        m = re.fullmatch(r"/_uploads/repos/([^/]+/[^/]+)/releases/(\d+)/assets", request.path)
        release = self.releases.get(int(m[2])) if m else None
        if m is None or release is None or "name" not in request.query:
            return _error(404, "Not Found")
        data = await request.read()
        with self._changed:
            aid = next(self._ids)
            name = request.query["name"]
            asset = {"id": aid, "name": name, "size": len(data), "state": "uploaded",
                     "content_type": request.headers.get("Content-Type", ""),
                     "url": f"{self.url}/repos/{m[1]}/releases/assets/{aid}",
                     "browser_download_url": f"https://github.example/{m[1]}/releases/download/"
                                             f"{release['tag_name']}/{name}"}
            self.assets[aid] = asset | {"_data": data}
            release["assets"].append(asset)
        return web.json_response(asset, status=201)


def _conditional(request: web.Request, answer: web.StreamResponse) -> web.StreamResponse:
    """GitHub's conditional reads: an ``ETag`` on each 200 to a GET, 304 to a matching ``If-None-Match``."""
    if request.method != "GET" or answer.status != 200 or not isinstance(answer, web.Response) \
            or not isinstance(answer.body, bytes):
        return answer
    etag = f'"{hashlib.sha256(answer.body).hexdigest()[:32]}"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers={"ETag": etag})
    answer.headers["ETag"] = etag
    return answer


def _under(url: str, callback: str) -> bool:
    """GitHub's rule for a redirect_uri: the callback URL's host and port, and its path or below."""
    want, got = urllib.parse.urlsplit(callback), urllib.parse.urlsplit(url)
    path = want.path.rstrip("/")
    return (got.scheme, got.netloc) == (want.scheme, want.netloc) and \
        (got.path == want.path or got.path.startswith(f"{path}/"))


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest"}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status)
