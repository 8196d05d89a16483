"""Content-addressed caches for builds: modules by source+recipe+toolchain, dependencies by lock file.

An entry is a directory named by its key, made complete in a temporary directory and renamed
into place, so a reader never sees half an entry and two workers filling one key do not
collide.  Using an entry refreshes its time; past the size bound the least recently used
entries go.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from workers import lease

# Directories a source tree's digest ignores: build outputs and fetched dependencies.
IGNORED = frozenset({".git", "node_modules", "target", "build", "__pycache__", ".wasmbot"})


def source_digest(root: Path) -> str:
    """sha256 over the tree's relative paths, executable bits and contents (symlinks as targets)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                h.update(b"L" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
            elif stat.S_ISREG(info.st_mode):
                h.update(b"F" + rel.encode() + b"\0" + (b"x" if info.st_mode & 0o111 else b"-"))
                with path.open("rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def size(path: Path) -> int:
    """Bytes of the regular files at or below ``path`` (symlinks not followed)."""
    if not path.is_dir():
        return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink() and p.is_file())


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Cache:
    """Entries are the directories (or files) directly below ``root``; names starting with a dot
    are scratch space (``.NAME@HOST@PID.*``: workers/sweep.py removes a dead owner's), ``.tmp``
    files are being written."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def get(self, name: str) -> Path | None:
        path = self.root / name
        if not path.is_dir():
            return None
        os.utime(path)  # recently used
        return path

    @contextmanager
    def filling(self, name: str) -> Iterator[Path]:
        """A scratch directory that becomes entry ``name`` if the block completes."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}@{lease.path_tag()}.", dir=self.root))
        try:
            yield scratch
            with contextlib.suppress(OSError):  # someone else filled it first: theirs is as good
                scratch.rename(self.root / name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.evict(keep={name})

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir()
                if not p.name.startswith(".") and not p.name.endswith(".tmp") and not p.is_symlink()]

    def evict(self, keep: Collection[str] = (), dry_run: bool = False) -> list[tuple[str, int]]:
        """Remove least recently used entries (not those in ``keep``) until the cache fits its
        bound; return the names and sizes removed, or that would be with ``dry_run``."""
        entries = sorted(self.entries(), key=lambda p: p.stat().st_mtime)
        sizes = {p: size(p) for p in entries}
        total = sum(sizes.values())
        removed = []
        for path in entries:
            if total <= self.max_bytes:
                break
            if path.name in keep:
                continue
            if not dry_run:
                remove(path)
            total -= sizes[path]
            removed.append((path.name, sizes[path]))
        return removed

    def free(self, nbytes: int, keep: Collection[str] = (), dry_run: bool = False) -> list[tuple[str, int]]:
        """Remove least recently used entries until ``nbytes`` are freed or none is left to remove."""
        total = sum(size(p) for p in self.entries())
        return Cache(self.root, max(0, total - nbytes)).evict(keep, dry_run)
