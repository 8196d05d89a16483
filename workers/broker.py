"""The embedded broker: kombu's SQLAlchemy transport on SQLite, told cheaply when to look.

kombu's virtual transports poll: every ``polling_interval`` (1 s by default) each worker runs a
``BEGIN IMMEDIATE`` transaction and a query for the next message.  With three stages per job
that second is paid up to three times.  SQLite counts the commits of other connections in
``PRAGMA data_version``, which costs a few microseconds to read, so this transport polls that
number often and runs the real query only when some connection committed since the last look
(or once a second anyway, as a safety net).  A job then waits for the broker milliseconds, not
a second, and an idle worker does almost no work.
"""

from __future__ import annotations

import sqlite3
import time
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as sqla

ALIAS = "wasmbot-sqla"  # broker URLs ``wasmbot-sqla+sqlite:///PATH`` use this transport
FULL_POLL_EVERY = 1.0  # seconds between real queries even when nothing seems to change


class Channel(sqla.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probe: sqlite3.Connection | None = None
        self._seen: dict[str, tuple[int, float]] = {}  # queue -> (data_version, when we queried)

    def _data_version(self) -> int | None:
        """The database's commit counter as seen from a connection of our own (None: unknown)."""
        if self._probe is None:
            url = self.connection.client.hostname  # "sqlite:///PATH"
            if not url.startswith("sqlite:///"):
                return None
            self._probe = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
        row = self._probe.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        version, now = self._data_version(), time.monotonic()
        seen = self._seen.get(queue)
        unchanged = version is not None and seen is not None and seen[0] == version
        if unchanged and seen is not None and now - seen[1] < FULL_POLL_EVERY:
            raise Empty()
        # Note the version before the query: a commit that lands during it shows up next time.
        self._seen[queue] = (version if version is not None else -1, now)
        return super()._get(queue)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        super().close()


class Transport(sqla.Transport):
    Channel = Channel
    polling_interval = 0.02  # a data_version read, not a query: cheap enough to do often


TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
