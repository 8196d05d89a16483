"""Signed links to a job's log (``/jobs/ID/log?exp=…&sig=…``): shown in Slack messages and GitHub
checks, served by the web front end, so each of them imports this and none imports another.

A link is signed with ``log_link_key`` (or the file ``log_link_key_file`` names), which every
server replica shares, so a link made by one verifies on all; it names when it expires
(``log_link_ttl`` after it was made, rounded up to a tenth of that), and the signature covers
that.  Without Redis there is only one server, and a key is made up in its data directory when
none is configured; with Redis, replicas may run on other hosts, so a key must be configured:
until it is, no links are made (``serve`` says so when it starts).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

from workers.config import Settings
from workers.configsource import ConfigError

log = logging.getLogger(__name__)


class NoKey(ConfigError):
    """No shared key is configured where one is needed."""


def key(settings: Settings) -> bytes:
    """The signing key: configured, or (local mode only) this data directory's own."""
    if settings.log_link_key is not None:
        return settings.log_link_key.get_secret_value().encode()
    if settings.log_link_key_file is not None:
        try:
            return settings.log_link_key_file.read_text().strip().encode()
        except OSError as exc:
            raise NoKey(f"log links are off: cannot read log_link_key_file "
                        f"{settings.log_link_key_file}: {exc.strerror}") from None
    if settings.redis_url:
        raise NoKey("log links are off: set WASMBOT_LOG_LINK_KEY (or WASMBOT_LOG_LINK_KEY_FILE) to a "
                    "secret every server replica shares, e.g. `openssl rand -hex 32`")
    path = settings.data_dir / "log-link.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def check(settings: Settings) -> None:
    """Say once, at the start of ``serve``, why links will not be shown."""
    if settings.public_url:
        try:
            key(settings)
        except NoKey as exc:
            log.error("%s", exc)


def sign(signing_key: bytes, job_id: str, expires: int) -> str:
    """A link signature, so a job's log is readable only by whoever was shown the link, until
    it expires."""
    return hmac.new(signing_key, f"{job_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def expiry(ttl: float, now: float) -> int:
    """When a link made ``now`` expires: ``ttl`` on, rounded up to a tenth of it, so that a job's
    link stays the same from one message edit to the next (an edit that changes nothing is not
    sent)."""
    step = max(1, int(ttl / 10))
    return -(-int(now + ttl) // step) * step


def log_url(settings: Settings, job_id: str, now: float | None = None) -> str | None:
    """The signed link to a job's log, where wasmbot has a public URL (and a key to sign with)."""
    if not settings.public_url:
        return None
    try:
        signing_key = key(settings)
    except NoKey:
        return None
    expires = expiry(settings.log_link_ttl, time.time() if now is None else now)
    return (f"{settings.public_url.rstrip('/')}/jobs/{job_id}/log"
            f"?exp={expires}&sig={sign(signing_key, job_id, expires)}")


def verify(settings: Settings, job_id: str, signature: str, expires: str, now: float | None = None) -> bool:
    """Whether the link was signed with the shared key and has not expired."""
    if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
        return False
    try:
        signing_key = key(settings)
    except NoKey:
        return False
    return hmac.compare_digest(sign(signing_key, job_id, int(expires)), signature)
