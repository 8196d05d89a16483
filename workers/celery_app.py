"""The Celery application, configured from wasmbot's settings.

Durability settings are fixed here, not left to deployment: tasks are acknowledged only after
they finish (``acks_late``), a task whose worker process dies is rejected back to the queue
(``task_reject_on_worker_lost``), and each worker takes one message at a time.
"""

from __future__ import annotations

from celery import Celery

from bot.config import Settings, load_settings

app = Celery("wasmbot", include=["workers.pipeline", "workers.recovery"])
_settings: Settings | None = None


def configure(settings: Settings) -> Celery:
    global _settings
    _settings = settings
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
        task_default_queue="wasmbot",
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def settings() -> Settings:
    """The settings this process was configured with (loaded from the environment if none)."""
    if _settings is None:
        configure(load_settings())
    assert _settings is not None
    return _settings
