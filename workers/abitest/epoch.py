"""Wall-clock deadlines for guest code that hold whether or not Python gets to run.

wasmtime stops a guest when its engine's epoch passes the store's deadline.  A Python thread
that advances the epoch needs the GIL and CPU time; under load it ran late and a 1 s limit
stretched to 1.3-1.6 s.  Here a one-shot POSIX timer (``timer_create`` with
``SIGEV_THREAD``) is armed at the deadline, and the C library calls wasmtime's
``wasmtime_engine_increment_epoch(engine)`` directly on a thread that never enters the
interpreter: one wake-up at the deadline, nothing to fall behind on.

The timer is armed a little past the limit (``slack``: 1 % of it, at most 10 ms), so that the
calls that follow within that slack can keep it instead of paying a system call each: a call
keeps the armed timer only if it fires no earlier than the call's own limit, so a callback is
never stopped before its limit, and a runaway one is stopped at most ``slack`` after it.

The epoch is the engine's, shared by every store, so guest calls with a deadline run one at a
time per process (the harness runs one VM per worker process anyway), and once a timer has
fired the next call waits until its increment has landed, so that it cannot stop that call
early.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
import time
import weakref

import wasmtime
from wasmtime._ffi import dll as _wasmtime

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2
_LANDING_SECONDS = 5.0  # an expired timer's increment lands within this (scheduling latency)
_SLACK_FRACTION = 0.01  # a runaway callback is stopped within this fraction of its limit ...
_MAX_SLACK_SECONDS = 0.01  # ... and within this many seconds


def slack(seconds: float) -> float:
    """How long after its limit a runaway callback may be stopped."""
    return min(seconds * _SLACK_FRACTION, _MAX_SLACK_SECONDS)


class _SigEvent(ctypes.Structure):
    """glibc's and musl's ``struct sigevent`` (64 bytes) for ``SIGEV_THREAD``."""

    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("function", ctypes.c_void_p), ("attributes", ctypes.c_void_p),
                ("pad", ctypes.c_char * 32)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "timer_create"):  # glibc before 2.34 keeps timers in librt
        libc = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
    return libc


class Deadlines:
    """One engine's deadline timer: ``arm`` before each guest call, ``done`` after it.

    The timer is never disarmed: a later ``arm`` keeps it while it fires late enough, or
    replaces it, reading atomically whether it had fired (then its increment is awaited,
    however late its thread runs).  At most one system call per guest call.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        libc = _libc()
        self._lock = threading.Lock()
        increment = ctypes.cast(_wasmtime.wasmtime_engine_increment_epoch, ctypes.c_void_p)
        self._event = _SigEvent(value=ctypes.cast(engine.ptr(), ctypes.c_void_p),
                                notify=_SIGEV_THREAD, function=increment)
        self._timer = ctypes.c_void_p()
        if libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(self._event), ctypes.byref(self._timer)):
            raise OSError(ctypes.get_errno(), "timer_create failed: no wall-clock limit for wasm guests")
        self._settime = libc.timer_settime
        self._settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ITimerSpec),
                                  ctypes.POINTER(_ITimerSpec)]
        self._settime.restype = ctypes.c_int
        self._new, self._old = _ITimerSpec(), _ITimerSpec()
        self._new_p, self._old_p = ctypes.pointer(self._new), ctypes.pointer(self._old)
        self._armed = False
        # No earlier than this (time.monotonic(), the timer's clock) the armed timer fires.
        self._fires_at = -math.inf
        self._landed = 0  # increments awaited so far: the epoch moves only then
        self._seconds = self._slack = 0.0  # the last limit armed for, and its slack
        self._ready: tuple[weakref.ref[wasmtime.Store], int] | None = None  # deadline set, at _landed
        # A store whose deadline is the next increment: calling its empty function traps once
        # the epoch has moved, which is how a landed increment is seen.
        self._probe = wasmtime.Store(engine)
        self._probe.set_epoch_deadline(1)
        module = wasmtime.Module(engine, '(module (func (export "f")))')
        func = wasmtime.Instance(self._probe, module, []).exports(self._probe)["f"]
        assert isinstance(func, wasmtime.Func)
        self._probe_func = func

    def arm(self, store: wasmtime.Store, seconds: float) -> float:
        """Give the next guest call on ``store`` a deadline ``seconds`` away (then call ``done``:
        guest calls with a deadline run one at a time); returns when, on ``time.monotonic()``."""
        self._lock.acquire()
        now = time.monotonic()
        if seconds != self._seconds:
            self._seconds, self._slack = seconds, slack(seconds)
        # Keep the armed timer only if it fires no earlier than this call's limit and within
        # its slack after it (calls may differ in their limits).
        if not now + seconds <= self._fires_at <= now + seconds + self._slack:
            try:
                self._rearm(now, seconds)
            except BaseException:
                self._lock.release()
                raise
        ready = self._ready
        if ready is None or ready[0]() is not store or ready[1] != self._landed:
            store.set_epoch_deadline(1)  # the next increment, which is the timer's
            self._ready = (weakref.ref(store), self._landed)
        return now

    def _rearm(self, now: float, seconds: float) -> None:
        after = seconds + self._slack
        ns = max(1, math.ceil(after * 1e9))
        self._new.value.sec, self._new.value.nsec = divmod(ns, 10**9)
        if self._settime(self._timer, 0, self._new_p, self._old_p):
            raise OSError(ctypes.get_errno(), "timer_settime failed: no wall-clock limit for wasm guests")
        self._fires_at = now + after  # measured before arming: the timer fires no earlier
        if self._armed and not (self._old.value.sec or self._old.value.nsec):
            self._await_increment()  # the last timer fired: let it land before this call
        self._armed = True

    def done(self) -> None:
        self._lock.release()

    def _await_increment(self) -> None:
        until = time.monotonic() + _LANDING_SECONDS
        while time.monotonic() < until:
            try:
                self._probe_func(self._probe)
            except wasmtime.Trap:
                break
            time.sleep(0.0001)
        self._probe.set_epoch_deadline(1)
        self._landed += 1
