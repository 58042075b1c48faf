"""ctypes declarations of the part of include/afut.h the differential test drives.

Library: $AFUT_LIB, else target/release/libafut.so, else target/debug/libafut.so (both
relative to the repository root). scripts/differential.sh builds one and sets AFUT_LIB.
"""

import ctypes
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

AFUT_OK = 0
AFUT_ERR_INVALID_STATE = -1
AFUT_ERR_CANCELLED = -2
AFUT_ERR_EXCEPTION = -3
AFUT_ERR_INVALID_ARGUMENT = -4
AFUT_ERR_WRONG_THREAD = -5
AFUT_ERR_LOOP_CLOSED = -6
AFUT_ERR_LOOP_RUNNING = -7
AFUT_ERR_TIMEOUT = -8

STATUS_NAMES = {
    0: "ok", -1: "invalid_state", -2: "cancelled", -3: "exception", -4: "invalid_argument",
    -5: "wrong_thread", -6: "loop_closed", -7: "loop_running", -8: "timeout",
    -9: "no_memory", -10: "os", -11: "panic",
}

c_loop_p = ctypes.c_void_p
c_fut_p = ctypes.c_void_p
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
CALLBACK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
DONE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
STEP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class AfutException(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int32),
                ("message", ctypes.c_char_p),
                ("detail", ctypes.c_void_p)]


class AfutErrorContext(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char_p),
                ("future", ctypes.c_void_p),
                ("exception", ctypes.POINTER(AfutException))]


HANDLER_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(AfutErrorContext),
                              ctypes.c_void_p)


def library_path():
    env = os.environ.get("AFUT_LIB")
    if env:
        return env
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "libafut.so")
        if os.path.exists(p):
            return p
    raise SystemExit("differential: no libafut.so; run `cargo build` or set AFUT_LIB")


def load(path=None):
    lib = ctypes.CDLL(path or library_path())
    i32, u64, dbl, b, sz = (ctypes.c_int32, ctypes.c_uint64, ctypes.c_double, ctypes.c_bool,
                            ctypes.c_size_t)
    vp = ctypes.c_void_p

    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    fn("afut_loop_new", c_loop_p)
    fn("afut_loop_free", None, c_loop_p)
    fn("afut_loop_close", i32, c_loop_p)
    fn("afut_loop_time", dbl, c_loop_p)
    fn("afut_loop_run_once", i32, c_loop_p, ctypes.c_int, ctypes.POINTER(sz))
    fn("afut_loop_run_until_complete", i32, c_loop_p, c_fut_p)
    fn("afut_loop_run_forever", i32, c_loop_p)
    fn("afut_loop_stop", None, c_loop_p)
    fn("afut_loop_call_soon", u64, c_loop_p, CALLBACK_FN, vp, FREE_FN)
    fn("afut_loop_call_later", u64, c_loop_p, dbl, CALLBACK_FN, vp, FREE_FN)
    fn("afut_loop_call_at", u64, c_loop_p, dbl, CALLBACK_FN, vp, FREE_FN)
    fn("afut_loop_cancel", b, c_loop_p, u64)
    fn("afut_loop_set_exception_handler", None, c_loop_p, HANDLER_FN, vp, FREE_FN)
    fn("afut_loop_create_future", c_fut_p, c_loop_p)
    fn("afut_ref", c_fut_p, c_fut_p)
    fn("afut_unref", None, c_fut_p)
    fn("afut_set_result", i32, c_fut_p, vp, FREE_FN)
    fn("afut_set_exception", i32, c_fut_p, i32, ctypes.c_char_p, vp, FREE_FN)
    fn("afut_result", i32, c_fut_p, ctypes.POINTER(vp))
    fn("afut_exception", i32, c_fut_p, ctypes.POINTER(AfutException))
    fn("afut_done", b, c_fut_p)
    fn("afut_cancelled", b, c_fut_p)
    fn("afut_cancel", b, c_fut_p, ctypes.c_char_p)
    fn("afut_cancel_message", ctypes.c_char_p, c_fut_p)
    fn("afut_add_done_callback", i32, c_fut_p, DONE_FN, vp, FREE_FN)
    fn("afut_remove_done_callback", sz, c_fut_p, DONE_FN, vp)
    fn("afut_describe", sz, c_fut_p, ctypes.c_char_p, sz)
    fn("afut_gather", c_fut_p, c_loop_p, ctypes.POINTER(c_fut_p), sz, b)
    fn("afut_gather_child", c_fut_p, c_fut_p, sz)
    fn("afut_wait_for", c_fut_p, c_loop_p, c_fut_p, dbl)
    fn("afut_shield", c_fut_p, c_loop_p, c_fut_p)
    fn("afut_task_new", c_fut_p, c_loop_p, STEP_FN, vp, FREE_FN)
    fn("afut_task_await", i32, c_fut_p, c_fut_p)
    fn("afut_is_task", b, c_fut_p)
    fn("afut_task_cancelling", ctypes.c_int, c_fut_p)
    fn("afut_task_uncancel", ctypes.c_int, c_fut_p)
    fn("afut_task_take_cancel", b, c_fut_p, ctypes.POINTER(ctypes.c_char_p))
    fn("afut_task_cancel_requested", b, c_fut_p, ctypes.POINTER(ctypes.c_char_p))
    return lib


NO_FREE = FREE_FN()  # a NULL afut_free_fn
