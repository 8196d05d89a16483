"""The wall-clock limit does not depend on Python getting to run (issue 21, point 5).

A thread that advances wasmtime's epoch needs the GIL; under load it gets it late and the
limit stretches (a 1 s limit took 1.3-1.6 s with GIL-hungry threads on a busy machine).  Here
a thread holds the GIL outright while a guest loops: the guest must still be stopped.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time

import pytest
import wasmtime

from workers.abitest.guest import Guest
from workers.abitest.host import Host
from workers.abitest.state import World
from workers.abitest.vm import VM, CallbackFailed, Limits, compile_module
from workers.abitest.wasi import Wasi

# Counts its iterations at address 0, forever.
SPIN = """
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "spin")
    (loop $forever
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (br $forever))))
"""


def spinning_vm(seconds: float) -> VM:
    module, _ = compile_module(wasmtime.wat2wasm(SPIN), None)
    guest, world = Guest(), World()
    host = Host(guest, world, "0.2.0", vm_id="vm", vm_config=b"")
    return VM(module, host, Wasi(guest, host.log, world.now_ns), guest, "proxy_on_memory_allocate",
              Limits(fuel=10**18, seconds=seconds))


def test_a_looping_guest_is_stopped_while_another_thread_holds_the_gil() -> None:
    vm = spinning_vm(0.3)
    counter = ctypes.cast(vm.guest._mem().data_ptr(vm.store), ctypes.POINTER(ctypes.c_uint32))
    seen: dict[str, object] = {}

    def hold_the_gil() -> None:
        """Wait for the guest to start, then keep the GIL (the switch interval is raised, and
        reading guest memory through ctypes keeps it) until the counter stops or 20 s pass."""
        while counter[0] == 0:  # the guest can only signal through its memory
            time.sleep(0.001)
        give_up = time.monotonic() + 20
        last, still = counter[0], 0
        while still < 200_000 and time.monotonic() < give_up:
            now = counter[0]
            still = still + 1 if now == last else 0
            last = now
        seen["stopped"] = still >= 200_000

    interval = sys.getswitchinterval()
    holder = threading.Thread(target=hold_the_gil)
    sys.setswitchinterval(1000.0)
    try:
        holder.start()
        with pytest.raises(CallbackFailed, match=r"spin: ran longer than 0\.3 s of wall-clock time"):
            vm.call("spin")
    finally:
        sys.setswitchinterval(interval)
        holder.join()
    assert seen == {"stopped": True}, "the guest ran on while Python could not run"


# Counts at address 0 until the host sets the word at 4, then clears it and returns.
WAIT = """
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "wait")
    (loop $until_released
      (if (i32.load (i32.const 4)) (then (i32.store (i32.const 4) (i32.const 0)) (return)))
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (br $until_released))))
"""


def waiting_vm(seconds: float) -> VM:
    module, _ = compile_module(wasmtime.wat2wasm(WAIT), None)
    guest, world = Guest(), World()
    host = Host(guest, world, "0.2.0", vm_id="vm", vm_config=b"")
    return VM(module, host, Wasi(guest, host.log, world.now_ns), guest, "proxy_on_memory_allocate",
              Limits(fuel=10**18, seconds=seconds))


def release_each_after(vm: VM, seconds: float, calls: int, over: threading.Event) -> None:
    """Let each of ``calls`` of ``vm``'s ``wait`` run ``seconds`` from when its counting
    starts (or until ``over`` is set)."""
    words = ctypes.cast(vm.guest._mem().data_ptr(vm.store), ctypes.POINTER(ctypes.c_uint32))
    for _ in range(calls):
        before = words[0]
        while words[0] == before and not over.is_set():  # the guest signals through memory
            time.sleep(0.001)
        over.wait(seconds)
        words[1] = 1
        while words[1] and not over.is_set():  # taken: the callback returns
            time.sleep(0.001)


def test_each_callback_gets_its_whole_limit_after_an_earlier_one() -> None:
    """An armed timer is kept for the next callback only if it fires no earlier than that
    callback's own limit: two callbacks of 1.2 s each under a 2 s limit both finish, where
    keeping the first one's timer would stop the second 0.8 s into it."""
    vm = waiting_vm(2.0)
    over = threading.Event()  # set once the calls are over, however they ended
    releaser = threading.Thread(target=release_each_after, args=(vm, 1.2, 2, over))
    releaser.start()
    try:
        assert vm.call("wait") is None
        assert vm.call("wait") is None  # CallbackFailed "ran longer than 2 s" if stopped early
    finally:
        over.set()
        releaser.join()


def test_a_short_limit_holds_right_after_a_callback_under_a_long_one() -> None:
    """The timer armed for a 30 s limit fires far too late for a 0.3 s one, so it must not be
    kept: the callback is stopped, not released by the thread 5 s later."""
    waiting_vm(30).call("proxy_on_memory_allocate", 1)
    vm = waiting_vm(0.3)
    over = threading.Event()
    releaser = threading.Thread(target=release_each_after, args=(vm, 5.0, 1, over))
    releaser.start()
    try:
        with pytest.raises(CallbackFailed, match=r"wait: ran longer than 0\.3 s of wall-clock time"):
            vm.call("wait")
    finally:
        over.set()
        releaser.join()
