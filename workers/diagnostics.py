"""Compiler diagnostics (errors and warnings with a file and line) read from a build's output.

One reader for the toolchains wasmbot runs:

- clang/gcc: ``path:line:col: error: message`` (``note:`` lines belong to the diagnostic before);
- Go and TinyGo: ``path:line:col: message``, always an error;
- rustc: ``error[E0425]: message`` (or ``warning: ...``), then `` --> path:line:col``;
- AssemblyScript: ``ERROR TS2304: message``, then ``in path(line,col)`` a few lines down.

The lines that follow a diagnostic (the source excerpt, notes, help) are kept as its details,
up to a blank line, a compiler's closing count or the next diagnostic.  Messages are whole: a
line is only as short as the job log keeps it (``log_line_max``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DETAIL_LINES = 40  # lines of excerpt and notes kept per diagnostic

_LOCATED = re.compile(
    r"^\s*(?P<path>[\w.+@/-]*\w\.\w+):(?P<line>\d+):(?:(?P<col>\d+):)?\s*"
    r"(?:(?P<level>fatal error|error|warning|note|remark)(?:\[(?P<code>[\w-]+)\])?:\s*)?(?P<message>\S.*)$"
)
_RUST_HEADER = re.compile(r"^(?P<level>error|warning)(?:\[(?P<code>\w+)\])?: (?P<message>.+)$")
_RUST_AT = re.compile(r"^\s*--> (?P<path>[^\s:]+):(?P<line>\d+):(?P<col>\d+)")
_AS_HEADER = re.compile(r"^\s*(?P<level>ERROR|WARNING) (?P<code>\w+): (?P<message>.+?)"
                        r"(?: in (?P<path>[\w./@+-]+)\((?P<line>\d+),(?P<col>\d+)\))?$")
_AS_AT = re.compile(r"\bin (?P<path>[\w./@+-]+)\((?P<line>\d+),(?P<col>\d+)\)\s*$")
_CLOSING = re.compile(r"^\d+ (?:warnings?|errors?)(?: and \d+ (?:warnings?|errors?))? generated\.$")


@dataclass
class Diagnostic:
    path: str
    line: int
    column: int | None
    level: str  # "error" or "warning"
    message: str
    code: str = ""
    details: list[str] = field(default_factory=list)

    def key(self) -> tuple[str, int, int | None, str, str]:
        return self.path, self.line, self.column, self.level, self.message


@dataclass
class _Header:
    level: str
    code: str
    message: str
    lines: list[str] = field(default_factory=list)


def _level(word: str) -> str:
    return "warning" if word.lower() == "warning" else "error"


def parse(lines: Iterable[str]) -> list[Diagnostic]:
    """Every error and warning in ``lines`` that names a file and line, in order, each once."""
    found: list[Diagnostic] = []
    seen: set[tuple[str, int, int | None, str, str]] = set()
    current: Diagnostic | None = None
    pending: _Header | None = None

    def add(diagnostic: Diagnostic) -> Diagnostic | None:
        if diagnostic.key() in seen:
            return None
        seen.add(diagnostic.key())
        found.append(diagnostic)
        return diagnostic

    for line in lines:
        if not line.strip() or _CLOSING.match(line.strip()):
            current = pending = None
            continue
        if pending is not None and (at := _RUST_AT.match(line) or _AS_AT.search(line)):
            current = add(Diagnostic(at["path"], int(at["line"]), int(at["col"]), pending.level,
                                     pending.message, pending.code, [*pending.lines, line]))
            pending = None
            continue
        if (hit := _LOCATED.match(line)) and not _RUST_AT.match(line):
            if hit["level"] in ("note", "remark"):
                if current is not None and len(current.details) < DETAIL_LINES:
                    current.details.append(line)
                continue
            if hit["level"] is None and hit["col"] is None:
                continue  # "file.go:12: text" is a log line, not Go's "file.go:12:5: message"
            pending = None
            current = add(Diagnostic(hit["path"], int(hit["line"]), int(hit["col"]) if hit["col"] else None,
                                     _level(hit["level"] or "error"), hit["message"], hit["code"] or ""))
            continue
        header = _RUST_HEADER.match(line) or _AS_HEADER.match(line)
        if header is not None:
            current = None
            if header.re is _AS_HEADER and header["path"]:  # an older asc: the place on the same line
                current = add(Diagnostic(header["path"], int(header["line"]), int(header["col"]),
                                         _level(header["level"]), header["message"], header["code"]))
                pending = None
            else:
                pending = _Header(_level(header["level"]), header["code"] or "", header["message"])
            continue
        if current is not None and len(current.details) < DETAIL_LINES:
            current.details.append(line)
        elif pending is not None and len(pending.lines) < DETAIL_LINES:
            pending.lines.append(line)
    return found
