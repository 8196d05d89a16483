"""HTTP/1.1 for the registry client, on the standard library's ``http.client``.

What a registry client needs and no more: one kept-alive connection per origin, TLS checked
against the system's CAs or a bundle, redirects followed (registries send blob downloads to
their storage or a CDN; ``Authorization`` is dropped when the origin changes), bodies read
whole or streamed, and the proxy the environment names (``https_proxy``, ``http_proxy``,
``all_proxy``, ``no_proxy``, read by ``urllib.request`` as requests reads them; HTTPS goes
through a CONNECT tunnel).  Retries, authentication and errors are ``registry.Registry``'s.

Why not urllib3 or requests: ``wasmbot push`` and ``pull`` import this on every run, and urllib3
costs about 30 ms of CPU to import on top of ``http.client`` (requests about 90 ms): more than
the rest of a small pull's own work (docs/registries.md "Speed").
"""

from __future__ import annotations

import base64
import http.client
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TransportError(Exception):
    """No HTTP answer: the connection failed, timed out or was broken off."""


class TLSFailure(TransportError):
    pass


class TimedOut(TransportError):
    pass


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage  # ``get`` ignores case
    raw: http.client.HTTPResponse = field(repr=False)
    _data: bytes | None = field(default=None, repr=False)

    @property
    def data(self) -> bytes:
        """The whole body (what is left of it, for a streamed response)."""
        if self._data is None:
            self._data = self.read()
        return self._data

    def read(self, amount: int | None = None) -> bytes:
        try:
            return self.raw.read(amount)
        except (OSError, http.client.HTTPException) as exc:
            raise _failure(exc) from exc

    def finish(self) -> None:
        """Read the rest of the body (a redirect's or an error's: small), so that the connection
        can carry the next request."""
        self.data  # noqa: B018 - read for its effect

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body in pieces; a connection whose body is left unread is not used again."""
        while chunk := self.read(size):
            yield chunk


class Client:
    """Connections to the origins one ``Registry`` talks to: the registry, its token service and
    wherever its blobs are redirected."""

    def __init__(self, verify: bool | str, timeout: float, user_agent: str = "wasmbot") -> None:
        self.timeout, self.user_agent = timeout, user_agent
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._connections: dict[tuple[str, str], tuple[http.client.HTTPConnection, Response | None]] = {}
        self._proxies: dict[tuple[str, str], Proxy | None] = {}

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, *, stream: bool = False) -> Response:
        """Send one request, following redirects; a response not ``stream``ed is read whole."""
        sent = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange(method, url, body, sent)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                if not stream:
                    response.finish()
                return response
            response.finish()
            target = urljoin(url, location)
            if urlsplit(target)[:2] != urlsplit(url)[:2]:
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            if response.status == 303 and method != "HEAD":
                method, body = "GET", None
            url = target
        raise TransportError(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    def _exchange(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": self.user_agent, **headers}
        proxy = self._proxy(key)
        if proxy is not None and parts.scheme == "http":  # forwarded: the proxy reads the whole URL
            path = parts._replace(fragment="").geturl()
            headers |= {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
        kept = self._connections.pop(key, None)
        if kept is not None and (kept[1] is None or kept[1].raw.isclosed()):
            try:  # a kept-alive connection the server may have closed meanwhile: once more on a new one
                return self._send(key, kept[0], method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                kept[0].close()
                if isinstance(exc, ssl.SSLError | TimeoutError):
                    raise _failure(exc) from exc
        elif kept is not None:
            kept[0].close()  # a streamed body left unread
        try:
            return self._send(key, self._connect(key, proxy), method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise _failure(exc) from exc

    def _send(self, key: tuple[str, str], connection: http.client.HTTPConnection, method: str, path: str,
              body: bytes | None, headers: dict[str, str]) -> Response:
        connection.request(method, path, body=body, headers=headers)
        raw = connection.getresponse()
        response = Response(raw.status, raw.msg, raw)
        if not raw.will_close:
            self._connections[key] = (connection, response)
        return response

    def _proxy(self, key: tuple[str, str]) -> Proxy | None:
        if key not in self._proxies:
            self._proxies[key] = proxy_for(*key)
        return self._proxies[key]

    def _connect(self, key: tuple[str, str], proxy: Proxy | None) -> http.client.HTTPConnection:
        scheme, netloc = key
        if scheme == "http":
            return http.client.HTTPConnection(proxy.address if proxy else netloc, timeout=self.timeout)
        if scheme != "https":
            raise TransportError(f"cannot follow a {scheme}:// URL")
        connection = http.client.HTTPSConnection(proxy.address if proxy else netloc, timeout=self.timeout,
                                                 context=self._context())
        if proxy is not None:
            connection.set_tunnel(netloc, headers={"Proxy-Authorization": proxy.authorization}
                                  if proxy.authorization else None)
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self._verify is False:
                self._tls = ssl.create_default_context()
                self._tls.check_hostname, self._tls.verify_mode = False, ssl.CERT_NONE
            else:
                self._tls = ssl.create_default_context(
                    cafile=self._verify if isinstance(self._verify, str) else None)
        return self._tls


@dataclass(frozen=True)
class Proxy:
    address: str  # host:port
    authorization: str | None = field(default=None, repr=False)  # Proxy-Authorization


def proxy_for(scheme: str, netloc: str) -> Proxy | None:
    """The HTTP proxy the environment names for ``scheme://netloc``, if it is not bypassed."""
    if not any(name.lower() in ("http_proxy", "https_proxy", "all_proxy") for name in os.environ):
        return None
    import urllib.request  # only with a proxy configured: it costs a few ms to import

    proxies = urllib.request.getproxies()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass(netloc):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise TransportError(f"the proxy {parts.scheme}://{parts.hostname} is not supported: give an "
                             "http:// proxy (HTTPS still goes through it encrypted, in a CONNECT tunnel)")
    authorization = None
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(secret.encode()).decode()
    return Proxy(parts.netloc.rpartition("@")[2], authorization)


def _failure(exc: BaseException) -> TransportError:
    """The transport error for what ``http.client``, ``ssl`` or the socket raised."""
    if isinstance(exc, ssl.SSLError):
        return TLSFailure(getattr(exc, "verify_message", None) or exc.reason or str(exc))
    if isinstance(exc, TimeoutError):
        return TimedOut(str(exc) or "timed out")
    return TransportError(str(exc) or type(exc).__name__)
