#!/usr/bin/env python3
"""asyncio_bridge.py: Python's own asyncio loop drives an afut loop.

afut's host contract, seen from asyncio (AfutDriver below):

  * loop.add_reader(afut_loop_fd(aloop), ...): the fd is readable whenever afut
    has work (due timers included); on each event call
    afut_loop_run_once(aloop, 0, NULL) once. Never read or close the fd.
  * after every dispatch, re-arm one loop.call_later from
    afut_loop_timeout_ms(aloop) (-1 none, 0 now, >0 ms, rounded up): a safety
    net for afut's timers, since the fd already signals them.

So the asyncio thread is afut's loop thread: afut callbacks run inside
run_once, i.e. on the asyncio thread, and may touch asyncio objects directly.

The bridge (AfutDriver.wrap) turns an afut future into an asyncio.Future:
an afut done-callback (a ctypes CFUNCTYPE) copies the outcome with
fut.set_result / set_exception; cancelling the asyncio side cancels the
afut side.

Here the afut futures are completed by threading.Thread workers calling
afut_set_result / afut_set_exception through ctypes: ctypes releases the
GIL and the call comes from a real OS thread, foreign to afut, exactly as
a C worker thread would.

Library: $AFUT_LIB, else target/release/libafut.so next to this repository.
"""

import asyncio
import ctypes
import os
import sys
import threading
import time

# --------------------------------------------------------------------------
# ctypes declarations of the part of include/afut.h used here

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_PATH = os.environ.get(
    "AFUT_LIB", os.path.join(HERE, "..", "..", "target", "release", "libafut.so"))

AFUT_OK = 0
AFUT_ERR_CANCELLED = -2
AFUT_ERR_EXCEPTION = -3

c_loop_p = ctypes.c_void_p
c_fut_p = ctypes.c_void_p
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
CALLBACK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
DONE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class AfutException(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int32),
                ("message", ctypes.c_char_p),
                ("detail", ctypes.c_void_p)]


def load_afut(path):
    try:
        lib = ctypes.CDLL(path, use_errno=True)
    except OSError as e:
        sys.exit(f"asyncio_bridge: cannot load {path} ({e}); "
                 "run `cargo build --release` or set AFUT_LIB")

    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    fn("afut_version", ctypes.c_char_p)
    fn("afut_status_str", ctypes.c_char_p, ctypes.c_int32)
    fn("afut_loop_new", c_loop_p)
    fn("afut_loop_free", None, c_loop_p)
    fn("afut_loop_fd", ctypes.c_int, c_loop_p)
    fn("afut_loop_timeout_ms", ctypes.c_int, c_loop_p)
    fn("afut_loop_run_once", ctypes.c_int32, c_loop_p, ctypes.c_int,
       ctypes.POINTER(ctypes.c_size_t))
    fn("afut_loop_call_later", ctypes.c_uint64, c_loop_p, ctypes.c_double,
       CALLBACK_FN, ctypes.c_void_p, FREE_FN)
    fn("afut_loop_create_future", c_fut_p, c_loop_p)
    fn("afut_sleep", c_fut_p, c_loop_p, ctypes.c_double, ctypes.c_void_p, FREE_FN)
    fn("afut_ref", c_fut_p, c_fut_p)
    fn("afut_unref", None, c_fut_p)
    fn("afut_set_result", ctypes.c_int32, c_fut_p, ctypes.c_void_p, FREE_FN)
    fn("afut_set_exception", ctypes.c_int32, c_fut_p, ctypes.c_int32,
       ctypes.c_char_p, ctypes.c_void_p, FREE_FN)
    fn("afut_result", ctypes.c_int32, c_fut_p, ctypes.POINTER(ctypes.c_void_p))
    fn("afut_exception", ctypes.c_int32, c_fut_p, ctypes.POINTER(AfutException))
    fn("afut_cancel", ctypes.c_bool, c_fut_p, ctypes.c_char_p)
    fn("afut_cancel_message", ctypes.c_char_p, c_fut_p)
    fn("afut_add_done_callback", ctypes.c_int32, c_fut_p, DONE_FN,
       ctypes.c_void_p, FREE_FN)
    return lib


afut = load_afut(LIB_PATH)
libc = ctypes.CDLL(None)
libc.strdup.restype = ctypes.c_void_p
libc.strdup.argtypes = [ctypes.c_char_p]
# The C library's free() as an afut_free_fn: values made by strdup are then
# owned, and freed, by afut like those of any C producer.
C_FREE = ctypes.cast(libc.free, FREE_FN)
NO_FREE = FREE_FN()  # a NULL afut_free_fn


class AfutError(Exception):
    """An afut status code, or an exception an afut future finished with."""

    def __init__(self, code, message=None):
        self.code = code
        text = afut.afut_status_str(code).decode() if code < 0 else f"code {code}"
        super().__init__(f"{text}: {message}" if message else text)


def check(rc, what):
    if rc != AFUT_OK:
        raise AfutError(rc, what)


# --------------------------------------------------------------------------
# the integration

class AfutDriver:
    """Runs an afut loop inside the running asyncio loop (on its thread)."""

    def __init__(self, aio_loop):
        self.aio = aio_loop
        self.loop = afut.afut_loop_new()
        if not self.loop:
            raise MemoryError("afut_loop_new")
        self.fd = afut.afut_loop_fd(self.loop)
        if self.fd < 0:
            afut.afut_loop_free(self.loop)
            raise OSError(ctypes.get_errno(), "afut_loop_fd")
        self.timer = None
        self.dispatches = 0
        # done-callbacks in flight: key -> (asyncio future, afut future).
        # The CFUNCTYPE object must stay alive as long as C may call it.
        self._pending = {}
        self._next_key = 1
        self._on_done_c = DONE_FN(self._on_done)
        self.aio.add_reader(self.fd, self._dispatch)
        self.rearm()

    def _dispatch(self):
        """One afut iteration. Callbacks run here, on the asyncio thread."""
        check(afut.afut_loop_run_once(self.loop, 0, None), "afut_loop_run_once")
        self.dispatches += 1
        self.rearm()

    def rearm(self):
        """Match asyncio's timer to afut's next deadline. Call it after each
        dispatch, and after scheduling afut timers from outside one."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ms = afut.afut_loop_timeout_ms(self.loop)
        if ms >= 0:
            self.timer = self.aio.call_later(ms / 1000.0, self._dispatch)

    def wrap(self, afut_fut, convert=lambda ptr: ptr):
        """An asyncio.Future mirroring afut_fut (borrowed; the bridge takes its
        own reference until the outcome is copied). convert(value pointer)
        builds the Python value while the afut future is still alive."""
        py_fut = self.aio.create_future()
        key = self._next_key
        self._next_key += 1
        ref = afut.afut_ref(afut_fut)
        self._pending[key] = (py_fut, ref, convert)
        rc = afut.afut_add_done_callback(ref, self._on_done_c, key, NO_FREE)
        if rc != AFUT_OK:
            del self._pending[key]
            afut.afut_unref(ref)
            raise AfutError(rc, "afut_add_done_callback")

        def propagate_cancel(f):
            if f.cancelled() and key in self._pending:
                afut.afut_cancel(ref, b"cancelled by asyncio")

        py_fut.add_done_callback(propagate_cancel)
        return py_fut

    def _on_done(self, fut, key):
        # Called by afut inside run_once, on this (asyncio) thread. An
        # exception must not escape into C: ctypes would only print it.
        try:
            py_fut, ref, convert = self._pending.pop(key)
            value = ctypes.c_void_p()
            rc = afut.afut_result(fut, ctypes.byref(value))
            if py_fut.done():
                pass  # already cancelled on the asyncio side
            elif rc == AFUT_OK:
                py_fut.set_result(convert(value.value))
            elif rc == AFUT_ERR_CANCELLED:
                msg = afut.afut_cancel_message(fut)
                py_fut.cancel(msg.decode() if msg else None)
            elif rc == AFUT_ERR_EXCEPTION:
                exc = AfutException()
                check(afut.afut_exception(fut, ctypes.byref(exc)), "afut_exception")
                msg = exc.message.decode() if exc.message else None
                py_fut.set_exception(AfutError(exc.code, msg))
            else:
                py_fut.set_exception(AfutError(rc, "afut_result"))
            afut.afut_unref(ref)  # may be the last reference: allowed in a callback
        except BaseException as e:  # noqa: BLE001 - report, never unwind into C
            print(f"asyncio_bridge: error in done-callback: {e!r}", file=sys.stderr)

    def close(self):
        self.aio.remove_reader(self.fd)
        if self.timer is not None:
            self.timer.cancel()
        for py_fut, _, _ in self._pending.values():
            py_fut.cancel()
        afut.afut_loop_free(self.loop)  # drops queued callbacks, closes the fd
        for _, ref, _ in self._pending.values():
            afut.afut_unref(ref)
        self._pending.clear()
        self.loop = None


# --------------------------------------------------------------------------
# the demo

def c_string(ptr):
    return ctypes.string_at(ptr).decode()


def producer(fut, delay, text):
    """A foreign thread completing an afut future, as a C worker would."""
    time.sleep(delay)
    value = libc.strdup(text.encode())
    rc = afut.afut_set_result(fut, value, C_FREE)
    if rc != AFUT_OK:
        libc.free(ctypes.c_void_p(value))  # not taken: still ours
        print("producer: afut_set_result:", afut.afut_status_str(rc).decode(), file=sys.stderr)


def failer(fut, delay):
    time.sleep(delay)
    rc = afut.afut_set_exception(fut, 42, b"the sensor is unplugged", None, NO_FREE)
    if rc != AFUT_OK:
        print("failer: afut_set_exception:", afut.afut_status_str(rc).decode(), file=sys.stderr)


async def main():
    aio = asyncio.get_running_loop()
    driver = AfutDriver(aio)
    print("afut", afut.afut_version().decode(), "driven by asyncio on", threading.current_thread().name)
    futs, threads = [], []
    try:
        t0 = time.monotonic()
        # 1. completed by a foreign thread
        f1 = afut.afut_loop_create_future(driver.loop)
        futs.append(f1)
        threads.append(threading.Thread(target=producer, args=(f1, 0.2, "hello from a foreign thread")))
        # 2. failed by a foreign thread
        f2 = afut.afut_loop_create_future(driver.loop)
        futs.append(f2)
        threads.append(threading.Thread(target=failer, args=(f2, 0.1)))
        # 3. an afut timer (afut_sleep); the timer was scheduled outside a dispatch
        f3 = afut.afut_sleep(driver.loop, 0.15, None, NO_FREE)
        if not f3:
            raise AfutError(-4, "afut_sleep")
        futs.append(f3)
        driver.rearm()
        # 4. never completed: cancelled from the asyncio side by wait_for
        f4 = afut.afut_loop_create_future(driver.loop)
        futs.append(f4)

        for t in threads:
            t.start()

        text = await driver.wrap(f1, c_string)
        print(f"awaited afut future: {text!r} after {time.monotonic() - t0:.2f}s")
        try:
            await driver.wrap(f2)
        except AfutError as e:
            print(f"awaited afut future raised AfutError(code={e.code}): {e}")
        await driver.wrap(f3)
        print("awaited afut_sleep(0.15)")
        try:
            await asyncio.wait_for(driver.wrap(f4), 0.05)
        except asyncio.TimeoutError:
            msg = afut.afut_cancel_message(f4)
            print(f"wait_for timed out; afut future cancelled: {msg.decode() if msg else None}")
        print(f"asyncio dispatched afut {driver.dispatches} times")
    finally:
        for t in threads:
            t.join()
        driver.close()
        for f in futs:
            afut.afut_unref(f)
    print("asyncio_bridge: all done")


if __name__ == "__main__":
    asyncio.run(main())
