"""The embedded broker (workers/broker.py) on a real SQLite file, through kombu as Celery uses it."""

from __future__ import annotations

from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection
from sqlalchemy import event

from workers import broker


def url(path: Path) -> str:
    return f"{broker.ALIAS}+sqlite:///{path}"


def test_a_message_from_another_connection_is_seen(tmp_path: Path) -> None:
    with Connection(url(tmp_path / "b.sqlite")) as consumer, Connection(url(tmp_path / "b.sqlite")) as producer:
        inbox = consumer.SimpleQueue("q")
        with pytest.raises(Empty):
            inbox.get(block=False)  # creates the tables; nothing yet
        producer.SimpleQueue("q").put({"n": 1})
        assert inbox.get(timeout=10).payload == {"n": 1}
        producer.SimpleQueue("q").put({"n": 2})
        producer.SimpleQueue("q").put({"n": 3})
        got = [inbox.get(timeout=10), inbox.get(timeout=10)]
        assert [m.payload["n"] for m in got] == [2, 3]
        for message in got:
            message.ack()


def test_an_idle_poll_runs_no_query(tmp_path: Path) -> None:
    with Connection(url(tmp_path / "b.sqlite")) as conn:
        inbox = conn.SimpleQueue("q")
        with pytest.raises(Empty):
            inbox.get(block=False)
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        statements: list[str] = []
        event.listen(channel.session.bind, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        for _ in range(50):
            with pytest.raises(Empty):
                channel._get("q")
        assert statements == []  # nothing committed since the last look: no query at all
        Connection(url(tmp_path / "b.sqlite")).SimpleQueue("q").put({"n": 1})
        assert channel._get("q")["body"]  # a commit elsewhere: the real query runs and finds it
        assert any("SELECT" in s for s in statements)


def test_the_settings_name_this_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.config import load_settings

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("WASMBOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("WASMBOT_DATA_DIR", str(tmp_path))
    assert load_settings().broker_url.startswith(broker.ALIAS + "+sqlite:///")
