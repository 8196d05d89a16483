"""Refuse a source tree that holds anything but regular files, directories and links inside it.

A source comes from whoever opened the pull request.  A link to ``/dev/zero`` would make the
worker read forever, a link out of the tree would copy a host file into the job, and a FIFO
would block the first reader; so the tree is checked, by ``lstat`` only, before anything (the
cache key, language detection, .wasmbot.yaml, a copy) reads it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
         stat.S_IFBLK: "block device"}
ALLOWED = "a source may hold only regular files, directories and links inside it"


class UnsafeSource(Exception):
    """An entry of the tree is refused; the message names it relative to the tree."""


def _raise(error: OSError) -> None:
    raise UnsafeSource(f"cannot read {error.filename}: {error.strerror}")


def check(root: Path) -> None:
    """Raise ``UnsafeSource`` for the first link leaving ``root`` or special file below it."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):  # links are not followed
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = os.readlink(path)
                if os.path.isabs(target):
                    raise UnsafeSource(f"{rel} is a symbolic link to an absolute path ({target!r}); "
                                       + ALLOWED)
                resolved = Path(os.path.realpath(path))
                if resolved != real_root and real_root not in resolved.parents:
                    raise UnsafeSource(f"{rel} is a symbolic link that leaves the source ({target!r}); "
                                       + ALLOWED)
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = KINDS.get(stat.S_IFMT(mode), "special file")
                raise UnsafeSource(f"{rel} is a {kind}; {ALLOWED}")
