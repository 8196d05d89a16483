"""A client for the OCI distribution API: authentication, retries and errors a person can act on.

One ``Registry`` talks to one host.  Authentication follows the registry's challenge: ``Basic``
sends the configured credentials; ``Bearer`` fetches a token from the challenge's realm for the
scope the request needs (``repository:NAME:pull`` or ``pull,push``, ``registry:catalog:*``) and
caches it per scope.  429 and 5xx answers are retried with backoff, waiting what
``Retry-After`` asks; refused connections are retried briefly and then reported.  Every error
names the registry and says what to do.  Credentials are never logged or put in messages.

HTTP is ``transport``'s, on the standard library (why: its docstring).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlencode, urljoin

from workers.oci.credentials import Credentials
from workers.oci.transport import Client, Response, TimedOut, TLSFailure, TransportError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_WAIT = 30.0
MAX_MANIFEST_BYTES = 4 << 20  # distribution's own limit on a manifest
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
# What a TLS server answers a plain-HTTP request with: Go's net/http (docker-registry, zot,
# Harbor), nginx.
_TLS_ONLY = re.compile(r"HTTP request to an HTTPS server|plain HTTP request was sent to HTTPS port")


class RegistryError(Exception):
    """A registry operation failed; the message is written for the person who asked for it."""


class Unreachable(RegistryError):
    pass


class AuthenticationFailed(RegistryError):
    pass


class Denied(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class Corrupt(RegistryError):
    """Content whose digest or size is not what the manifest says."""


@dataclass
class Endpoint:
    host: str
    plain_http: bool = False
    verify: bool | str = True  # True: the system CAs; a path: a PEM bundle
    credentials: Credentials | None = None
    timeout: float = 60.0
    retries: int = 3

    @property
    def base(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"


@dataclass
class Manifest:
    raw: bytes
    media_type: str
    digest: str


@dataclass
class Registry:
    endpoint: Endpoint
    sleep: Callable[[float], None] = time.sleep
    requests_sent: int = 0
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _basic: bool = False
    http: Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Connections checked against ``endpoint.verify``, shared with the token service."""
        self.http = Client(self.endpoint.verify, self.endpoint.timeout)

    @property
    def host(self) -> str:
        return self.endpoint.host

    # -- the API ---------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=_pull(repository),
                                ok=(200, 404), what=f"check whether {repository} has {digest[:19]}")
        return response.status == 200

    def upload_blob(self, repository: str, data: bytes, digest: str) -> None:
        """Monolithic upload: POST to open a session, PUT the bytes with their digest."""
        scope = _push(repository)
        opened = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(202,),
                              what=f"open an upload in {repository}")
        location = opened.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} opened an upload without a Location header")
        url = urljoin(self.endpoint.base + "/", location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        self.request("PUT", url, scope=scope, data=data, ok=(201,), what=f"upload {digest}",
                     headers={"Content-Type": "application/octet-stream"})

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        expected = "sha256:" + hashlib.sha256(raw).hexdigest()
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}", scope=_push(repository),
                                data=raw, headers={"Content-Type": media_type}, ok=(201,),
                                what=f"store the manifest {repository}:{reference}")
        stored = response.headers.get("Docker-Content-Digest", expected)
        if stored != expected:
            raise Corrupt(f"registry {self.host} stored manifest {repository}:{reference} as {stored}, "
                          f"but its bytes hash to {expected}")
        return expected

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest ``tag`` names now, from one ``HEAD`` ("" when the registry does not say)."""
        response = self.request("HEAD", f"/v2/{repository}/manifests/{tag}", scope=_pull(repository),
                                headers={"Accept": MANIFEST_ACCEPT}, ok=(200,),
                                what=f"find {repository}:{tag}")
        response.finish()
        return response.headers.get("Docker-Content-Digest", "")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest's exact bytes, checked against the digest asked for or announced."""
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", scope=_pull(repository),
                                headers={"Accept": MANIFEST_ACCEPT}, ok=(200,), stream=True,
                                what=f"find {repository}:{reference}" if not reference.startswith("sha256:")
                                else f"find {repository}@{reference}")
        try:
            raw = response.read(MAX_MANIFEST_BYTES + 1)
        except TransportError as exc:
            raise Unreachable(f"registry {self.host} broke off sending a manifest of {repository} "
                              f"({_reason(exc)}); retry") from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"registry {self.host} served a manifest for {repository} larger than "
                                f"{MAX_MANIFEST_BYTES} bytes; refusing it")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        announced = response.headers.get("Docker-Content-Digest")
        for claimed in (reference if reference.startswith("sha256:") else None, announced):
            if claimed and claimed != digest:
                raise Corrupt(f"registry {self.host} served a manifest for {repository} whose bytes hash "
                              f"to {digest}, not {claimed}: it is corrupted or was tampered with")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(raw, media_type, digest)

    def fetch_blob(self, repository: str, digest: str, size: int, out: IO[bytes],
                   limit: int | None = None) -> None:
        """Stream a blob into ``out``, verifying its size and digest as it arrives."""
        if limit is not None and size > limit:
            raise RegistryError(f"{repository}@{digest} is {size} bytes, more than the {limit}-byte limit")
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=_pull(repository),
                                ok=(200,), stream=True, what=f"download {digest}")
        hasher, received = hashlib.sha256(), 0
        try:
            for chunk in response.chunks(1 << 16):
                received += len(chunk)
                if received > size:
                    break
                hasher.update(chunk)
                out.write(chunk)
        except TransportError as exc:
            raise Unreachable(f"registry {self.host} broke off the download of {digest} ({_reason(exc)}); "
                              "nothing was kept: retry") from None
        actual = "sha256:" + hasher.hexdigest()
        if received != size or actual != digest:
            raise Corrupt(f"blob {digest} from registry {self.host} ({repository}) is corrupted: got "
                          f"{received} bytes hashing to {actual}, expected {size} bytes. Nothing was kept; "
                          "push the image again or ask the registry's admins to check its storage")

    def get_blob(self, repository: str, digest: str, size: int, limit: int = 1 << 20) -> bytes:
        buffer = io.BytesIO()
        self.fetch_blob(repository, digest, size, buffer, limit)
        return buffer.getvalue()

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (the registry must allow deletes); False if it was gone."""
        response = self.request("DELETE", f"/v2/{repository}/manifests/{digest}", scope=_push(repository),
                                ok=(202, 404), what=f"delete {repository}@{digest}")
        return response.status == 202

    def tags(self, repository: str) -> list[str]:
        found: list[str] = []
        for page in self._pages(f"/v2/{repository}/tags/list?n=1000", _pull(repository),
                                f"list the tags of {repository}"):
            found.extend(page.get("tags") or [])
        return found

    def catalog(self) -> list[str]:
        found: list[str] = []
        for page in self._pages("/v2/_catalog?n=1000", "registry:catalog:*", "list its repositories"):
            found.extend(page.get("repositories") or [])
        return found

    # -- transport -------------------------------------------------------------------------

    def _pages(self, path: str, scope: str, what: str) -> Iterator[dict[str, Any]]:
        url: str | None = path
        while url:
            response = self.request("GET", url, scope=scope, ok=(200,), what=what)
            yield _json(response)
            link = _NEXT_LINK.search(response.headers.get("Link", ""))
            url = urljoin(self.endpoint.base + "/", link.group(1)) if link else None

    def request(self, method: str, path: str, *, scope: str, ok: tuple[int, ...],
                data: bytes | None = None, headers: dict[str, str] | None = None,
                stream: bool = False, what: str = "") -> Response:
        """Send one API request, authenticating and retrying as the registry asks."""
        url = path if path.startswith(("http://", "https://")) else self.endpoint.base + path
        what = what or f"{method} {path}"
        authenticated = False
        attempt = 0
        while True:
            response = self._send(method, url, scope, data, headers, stream, what, attempt)
            if (response.status == 401 and 401 not in ok and not authenticated
                    and self._authenticate(response, scope, what)):
                authenticated = True
                response.finish()
                continue
            if response.status in RETRY_STATUSES and attempt < self.endpoint.retries:
                response.finish()
                self.sleep(_retry_wait(response, attempt))
                attempt += 1
                continue
            if response.status in ok:
                return response
            raise self._error(response, scope, what)

    def _send(self, method: str, url: str, scope: str, data: bytes | None,
              headers: dict[str, str] | None, stream: bool, what: str, attempt: int) -> Response:
        while True:
            sent = dict(headers or {})
            if self._basic and self.endpoint.credentials:
                sent["Authorization"] = "Basic " + self.endpoint.credentials.basic()
            elif scope in self._tokens:
                sent["Authorization"] = "Bearer " + self._tokens[scope]
            try:
                self.requests_sent += 1
                return self.http.request(method, url, data, sent, stream=stream)
            except TransportError as exc:
                if isinstance(exc, TLSFailure):
                    raise Unreachable(
                        f"registry {self.host}: TLS verification failed ({_reason(exc)}). If it uses a "
                        f"private CA, set ca_bundle under [registries.\"{self.host}\"]; if it speaks plain "
                        "HTTP, set plain_http = true there") from None
                if attempt >= min(self.endpoint.retries, 2):
                    scheme = "http" if self.endpoint.plain_http else "https"
                    if isinstance(exc, TimedOut):
                        raise Unreachable(f"registry {self.host} did not answer within "
                                          f"{self.endpoint.timeout:g}s while trying to {what}; "
                                          "retry later") from None
                    raise Unreachable(
                        f"registry {self.host} is unreachable over {scheme} while trying to {what}: check "
                        "that the registry is running and the host and port are right, then retry") from None
                self.sleep(0.25 * 2**attempt)
                attempt += 1

    def _authenticate(self, response: Response, scope: str, what: str) -> bool:
        """Answer a 401 challenge; False when there is nothing new to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        credentials = self.endpoint.credentials
        if kind == "basic":
            if credentials is None or self._basic:
                return False
            self._basic = True
            return True
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        if kind != "bearer" or (params.get("error") == "insufficient_scope" and scope in self._tokens):
            return False
        self._tokens.pop(scope, None)  # an expired token is fetched again, once
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} asked for a bearer token without naming a realm")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        self._tokens[scope] = self._token(realm, query, what)
        return True

    def _token(self, realm: str, query: dict[str, str], what: str) -> str:
        credentials = self.endpoint.credentials
        try:
            if credentials is not None and credentials.identity_token:
                form = urlencode({"grant_type": "refresh_token", "refresh_token": credentials.password,
                                  "service": query["service"], "scope": query["scope"],
                                  "client_id": "wasmbot"})
                answer = self.http.request("POST", realm, form.encode(),
                                           {"Content-Type": "application/x-www-form-urlencoded"})
            else:
                answer = self.http.request(
                    "GET", realm + ("&" if "?" in realm else "?") + urlencode(query),
                    headers={"Authorization": "Basic " + credentials.basic()} if credentials else {})
        except TransportError as exc:
            raise Unreachable(f"registry {self.host}: its token service {realm} is unreachable "
                              f"({_reason(exc)})") from None
        if answer.status in (401, 403):
            raise self._auth_failed(what, f"its token service refused {self._who()}")
        if answer.status != 200:
            raise RegistryError(f"registry {self.host}: its token service answered HTTP {answer.status}")
        try:
            body = _json(answer)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}: its token service answered without a token")
        return token

    def _who(self) -> str:
        credentials = self.endpoint.credentials
        if credentials is None:
            return "anonymous access"
        return f"user {credentials.username!r} (from {credentials.source})"

    def _auth_failed(self, what: str, why: str) -> AuthenticationFailed:
        if self.endpoint.credentials is None:
            fix = (f"log in: set username and password (or password_file) under [registries.\"{self.host}\"] "
                   "in wasmbot.toml, or add the registry to Docker's config.json")
        else:
            fix = "check the username and password (or token) and that the account is active"
        return AuthenticationFailed(f"registry {self.host} rejected {self._who()} while trying to {what} "
                                    f"({why}): {fix}")

    def _error(self, response: Response, scope: str, what: str) -> RegistryError:
        status = response.status
        if status == 400 and self.endpoint.plain_http and _TLS_ONLY.search(
                response.data[:1000].decode(errors="replace")):
            return Unreachable(
                f"the registry at {self.host} speaks TLS; use https:// for it: set plain_http = false "
                f"under [registries.\"{self.host}\"] in wasmbot.toml (and ca_bundle = PATH if a private "
                "CA signs its certificate)")
        codes, detail = _error_body(response)
        if status == 401:
            if "insufficient_scope" in response.headers.get("WWW-Authenticate", "") or "DENIED" in codes:
                return self._denied(scope, what)
            return self._auth_failed(what, f"HTTP 401{': ' + detail if detail else ''}")
        if status == 403:
            return self._denied(scope, what)
        if status == 404:
            repository = scope.split(":")[1] if scope.startswith("repository:") else ""
            if "NAME_UNKNOWN" in codes and repository:
                return NotFound(f"registry {self.host} has no repository {repository!r} (while trying to "
                                f"{what}): check the name, or push an image there first")
            return NotFound(f"registry {self.host} could not {what}: not found"
                            f"{' (' + detail + ')' if detail else ''}")
        if status == 405 and "push" in scope:
            return Denied(f"registry {self.host} does not accept pushes (HTTP 405"
                          f"{': ' + detail if detail else ''}); it may be read-only. Push to another "
                          "registry or ask its admins")
        if status in RETRY_STATUSES:
            return RegistryError(f"registry {self.host} kept answering HTTP {status} while trying to {what} "
                                 f"({self.endpoint.retries + 1} attempts); retry later")
        return RegistryError(f"registry {self.host} refused to {what}: HTTP {status}"
                             f"{': ' + detail if detail else ''}")

    def _denied(self, scope: str, what: str) -> Denied:
        rights = "push to" if "push" in scope else "read"
        target = scope.split(":")[1] if scope.startswith("repository:") else "this registry"
        return Denied(f"registry {self.host} denied {self._who()} the right to {rights} {target} (while "
                      f"trying to {what}): ask the registry's admins for access, or use an account "
                      "that has it")


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _retry_wait(response: Response, attempt: int) -> float:
    header = response.headers.get("Retry-After", "").strip()
    if header:
        if header.isdigit():
            return min(float(header), MAX_RETRY_WAIT)
        if "," in header:  # an HTTP date
            import email.utils

            try:
                when = email.utils.parsedate_to_datetime(header).timestamp()
            except (TypeError, ValueError):  # not a date after all: the usual backoff
                return min(0.5 * 2.0**attempt, MAX_RETRY_WAIT)
            return float(max(0.0, min(when - time.time(), MAX_RETRY_WAIT)))
    return min(0.5 * 2.0**attempt, MAX_RETRY_WAIT)


def _json(response: Response) -> Any:
    return json.loads(response.data)


def _error_body(response: Response) -> tuple[set[str], str]:
    """The distribution spec's ``{"errors": [{"code", "message"}]}``, if the body is that."""
    try:
        errors = _json(response).get("errors") or []
    except (ValueError, AttributeError):
        return set(), ""
    codes = {str(e.get("code", "")) for e in errors if isinstance(e, dict)}
    messages = "; ".join(str(e["message"]) for e in errors if isinstance(e, dict) and e.get("message"))
    return codes, messages[:300]


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
