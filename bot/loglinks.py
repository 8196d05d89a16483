"""Signed links to a job's log (``/jobs/ID/log?sig=…``): shown in Slack messages and GitHub
checks, served by the web front end, so each of them imports this and none imports another."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from workers.config import Settings


def _key(settings: Settings) -> bytes:
    path = settings.data_dir / "log-link.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def sign(settings: Settings, job_id: str) -> str:
    """A link signature, so a job's log is readable only by whoever was shown the link."""
    return hmac.new(_key(settings), job_id.encode(), hashlib.sha256).hexdigest()[:32]


def log_url(settings: Settings, job_id: str) -> str | None:
    """The signed link to a job's log, where wasmbot has a public URL."""
    if not settings.public_url:
        return None
    return f"{settings.public_url.rstrip('/')}/jobs/{job_id}/log?sig={sign(settings, job_id)}"


def verify(settings: Settings, job_id: str, signature: str) -> bool:
    return hmac.compare_digest(sign(settings, job_id), signature)
