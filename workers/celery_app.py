"""The Celery application, configured from wasmbot's settings.

Durability settings are fixed here, not left to deployment: tasks are acknowledged only after
they finish (``acks_late``), a task whose worker process dies is rejected back to the queue
(``task_reject_on_worker_lost``), and each worker takes one message at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from workers import (
    broker,  # noqa: F401  (registers the embedded broker's transport)
    logsetup,
    routing,
)
from workers.config import Settings, load_settings

app = Celery("wasmbot", include=["workers.pipeline", "workers.recovery"])
_settings: Settings | None = None


def configure(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    logsetup.add_secrets(settings.secret_values())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        # The SQLAlchemy transport hands its options to create_engine: Redis only.
        broker_transport_options=(
            {"visibility_timeout": settings.visibility_timeout} if settings.redis_url else {}
        ),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # results live in the job store, not in Celery
        task_default_queue=routing.GENERAL,  # stages that need no toolchain (workers/routing.py)
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    if not settings.redis_url:
        _declare_sqlite_queue(settings)
    return app


def _declare_sqlite_queue(settings: Settings) -> None:
    """Create the broker's queue rows (the general queue and each toolchain's) once, under a
    file lock.

    kombu's SQLAlchemy transport creates a queue with a query-then-insert; a CLI and a worker
    starting together both insert, and one fails on the unique name.  Serialising the first
    declaration across processes avoids that race.
    """
    with (settings.data_dir / "broker.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with app.connection_for_write() as conn:
            for name in routing.queues(routing.TOOLCHAINS):
                conn.default_channel.queue_declare(queue=name)


def settings() -> Settings:
    """The settings this process was configured with (loaded from the environment if none)."""
    if _settings is None:
        configure(load_settings())
    assert _settings is not None
    return _settings


@setup_logging.connect
def _use_our_logging(loglevel: Any = None, **_: Any) -> None:
    """Celery's and kombu's records go to wasmbot's handler: a receiver here stops Celery from
    installing its own.  A worker started by ``celery -A workers.celery_app`` gets it here."""
    if logsetup.handler() is None:
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else str(loglevel or "INFO")
        logsetup.configure(level, os.environ.get("WASMBOT_LOG_FORMAT", "text"))
    if app.conf.worker_redirect_stdouts:  # stray prints become records too, as Celery would do
        app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)


def log_worker_notices() -> None:
    """Celery writes its shutdown notices ("worker: Warm shutdown") straight to stdout; send them
    through the log instead, so that JSON output stays one object per line."""
    import celery.apps.worker

    notices = logging.getLogger("celery.apps.worker")

    def say(msg: str, f: Any = None) -> None:
        notices.warning("%s", msg.strip())

    celery.apps.worker.safe_say = say
