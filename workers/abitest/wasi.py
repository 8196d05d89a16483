"""The WASI calls proxy-wasm SDKs make, implemented the way Envoy's host does.

No file system, no environment, no arguments: stdout and stderr become log lines (INFO and
ERROR), clocks and randomness work, ``proc_exit`` ends the callback.  Any other WASI import
links to a stub answering ENOSYS, as cpp-host's stubs do, so modules that merely import more
of WASI still load.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from workers.abitest.guest import Guest

ESUCCESS, EBADF, EINVAL, ENOSYS = 0, 8, 28, 52
FILETYPE_CHARACTER_DEVICE = 2


class ProcExit(Exception):
    """The module called ``proc_exit``; Envoy treats it as a failed callback."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the module called proc_exit({code})")
        self.code = code


class Wasi:
    def __init__(self, guest: Guest, log: Callable[[int, str], None], now_ns: Callable[[], int],
                 seed: int = 0) -> None:
        self.guest = guest
        self.log = log
        self.now_ns = now_ns
        self.random = random.Random(seed)
        self.partial = {1: b"", 2: b""}
        self.pending = False  # a line without its newline yet: flush logs it after the callback

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "fd_write": self.fd_write,
            "clock_time_get": self.clock_time_get,
            "clock_res_get": self.clock_res_get,
            "random_get": self.random_get,
            "environ_sizes_get": self.sizes_get,
            "args_sizes_get": self.sizes_get,
            "environ_get": self.empty_get,
            "args_get": self.empty_get,
            "proc_exit": self.proc_exit,
            "sched_yield": lambda cx: ESUCCESS,
            "poll_oneoff": self.poll_oneoff,
            "fd_fdstat_get": self.fd_fdstat_get,
            "fd_prestat_get": lambda cx, fd, buf: EBADF,
            "fd_close": lambda cx, fd: ESUCCESS if fd <= 2 else EBADF,
        }

    def fd_write(self, cx: Any, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        if fd not in (1, 2):
            return EBADF
        data = b""
        for i in range(iovs_len):
            ptr, size = struct.unpack("<II", self.guest.read(cx, iovs + 8 * i, 8))
            data += self.guest.read(cx, ptr, size)
        self.guest.put_u32(cx, nwritten, len(data))
        *lines, self.partial[fd] = (self.partial[fd] + data).split(b"\n")
        self.pending = bool(self.partial[1] or self.partial[2])
        for line in lines:
            self.log(2 if fd == 1 else 4, line.decode("utf-8", "replace"))
        return ESUCCESS

    def flush(self) -> None:
        """Log what the module wrote without a final newline."""
        if not self.pending:
            return  # after nearly every callback
        self.pending = False
        for fd, rest in self.partial.items():
            if rest:
                self.log(2 if fd == 1 else 4, rest.decode("utf-8", "replace"))
                self.partial[fd] = b""

    def clock_time_get(self, cx: Any, clock: int, precision: int, ret: int) -> int:
        if clock not in (0, 1, 2, 3):
            return EINVAL
        self.guest.put_u64(cx, ret, self.now_ns())
        return ESUCCESS

    def clock_res_get(self, cx: Any, clock: int, ret: int) -> int:
        self.guest.put_u64(cx, ret, 1)
        return ESUCCESS

    def random_get(self, cx: Any, buf: int, size: int) -> int:
        self.guest.write(cx, buf, self.random.randbytes(size))
        return ESUCCESS

    def sizes_get(self, cx: Any, count: int, size: int) -> int:
        self.guest.put_u32(cx, count, 0)
        self.guest.put_u32(cx, size, 0)
        return ESUCCESS

    def empty_get(self, cx: Any, ptrs: int, buf: int) -> int:
        return ESUCCESS

    def proc_exit(self, cx: Any, code: int) -> None:
        self.flush()
        raise ProcExit(code)

    def poll_oneoff(self, cx: Any, subs: int, events: int, count: int, nevents: int) -> int:
        """Every subscription fires at once: a filter must never block the proxy's thread."""
        for i in range(count):
            sub = self.guest.read(cx, subs + 48 * i, 48)
            userdata, tag = struct.unpack_from("<QB", sub, 0)
            self.guest.write(cx, events + 32 * i, struct.pack("<QHB", userdata, 0, tag).ljust(32, b"\0"))
        self.guest.put_u32(cx, nevents, count)
        return ESUCCESS

    def fd_fdstat_get(self, cx: Any, fd: int, buf: int) -> int:
        if fd > 2:
            return EBADF
        self.guest.write(cx, buf, struct.pack("<BxHxxxxQQ", FILETYPE_CHARACTER_DEVICE, 0, 0, 0))
        return ESUCCESS
