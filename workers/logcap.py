"""Caps on job logs: a line longer than ``log_line_max`` is cut, a job keeps ``job_log_max``.

A build may print anything, including one 400 MB line or endless output.  The sandbox's
output is read in bounded chunks (``pump``) so no line is ever held whole; the stores keep a
job's first lines (``head``) and a rolling tail within the job's budget, and put one marker
where the middle was dropped (docs/logging.md, "Log caps").
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable
from typing import IO

CHUNK = 64 * 1024
LINE_MAX = 8 * 1024
JOB_LOG_MAX = 4 * 2**20
ERROR_LINES = 5
MARKER_MAX = 40  # bytes of the longest cut marker


def human(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _decode(data: bytes, cut: bool) -> str:
    """Text from bytes; a cut line loses the incomplete UTF-8 sequence at its end."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=not cut)


def cut_marker(cut: int) -> str:
    return f" … [{human(cut)} cut]"


def cut_line(line: str, limit: int) -> str:
    """``line`` cut to ``limit`` bytes of UTF-8 with a marker saying how much went."""
    data = line.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return line
    marked = len(data) <= limit + MARKER_MAX and line.endswith(" cut]")
    if marked and len(line[:line.rfind(" … [")].encode()) <= limit:
        return line  # cut already, by the reader of the build's output
    return _decode(data[:limit], cut=True) + cut_marker(len(data) - limit)


def cut_text(text: str, limit: int) -> str:
    """Each line of ``text`` cut at ``limit`` bytes (a stage may log a multi-line report)."""
    if len(text) <= limit and "\n" not in text:
        return text
    return "\n".join(cut_line(line, limit) for line in text.split("\n"))


def pump(stream: IO[bytes], limit: int, on_line: Callable[[str], None]) -> None:
    """Call ``on_line`` for each line of ``stream``, each cut at ``limit`` bytes.

    Reads ``CHUNK`` bytes at a time and discards what is past the cap, so memory stays at
    about ``limit + CHUNK`` whatever the lines' length.
    """
    kept = bytearray()
    dropped = 0

    def emit() -> None:
        nonlocal dropped
        text = _decode(bytes(kept), cut=dropped > 0)
        on_line(text + cut_marker(dropped) if dropped else text)
        kept.clear()
        dropped = 0

    while True:
        chunk = stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)
        if not chunk:
            break
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            room = max(0, limit - len(kept))
            kept += piece[:room]
            dropped += len(piece) - min(room, len(piece))
            if end < 0:
                break
            emit()
            start = end + 1
    if kept or dropped:
        emit()


class Excerpt:
    """The lines a failure message quotes (the first error lines, else the last lines),
    kept without holding the whole output."""

    def __init__(self, is_error: Callable[[str], bool], limit: int = ERROR_LINES) -> None:
        self.is_error = is_error
        self.errors: list[str] = []
        self.last: deque[str] = deque(maxlen=limit)
        self.limit = limit

    def add(self, line: str) -> None:
        self.last.append(line)
        if len(self.errors) < self.limit and self.is_error(line):
            self.errors.append(line)

    def lines(self) -> list[str]:
        return self.errors or list(self.last)


def dropped_marker(lines: int, size: int) -> str:
    return f"… {lines} lines ({human(size)}) dropped …"
