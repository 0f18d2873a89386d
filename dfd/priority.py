"""Lower priority for the threads that feed on the decoder (face finding, early scoring).

In ``dfd detect`` the video decoder is the critical path: a clip's faces are found and
scored faster than its frames decode, but on a 2-core machine their threads take CPU from
the decoder's and so make the last frame arrive later. Run at a lower priority (a higher
nice value), they use what the decoder leaves and the decoder runs as if alone; the work and
its results are the same. Measured on 10-s 1080p DFDC clips: a clip 0.04-0.07 s faster (about
5%, see ``docs/benchmarks.md``).

Only on Linux, where a nice value belongs to one thread (``setpriority(2)`` with a thread id);
elsewhere, or where the call is refused, nothing changes. A thread's nice value can only be
raised without privileges, never lowered back, so call :func:`lower_this_thread` only in a
thread made for the work, never in a caller's (a server's or the main) thread: threads inherit
their creator's value, and a decoder started from a lowered thread would be lowered too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

#: the most a nice value can be (Linux)
MAX_NICE = 19


def per_thread_supported() -> bool:
    """Whether a nice value can be set for one thread (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def lower_this_thread(by: int) -> int | None:
    """Raise the calling thread's nice value by ``by`` (at most to :data:`MAX_NICE`); the new
    value, or None when nothing changed (``by`` <= 0, not Linux, or refused)."""
    if not isinstance(by, int) or isinstance(by, bool):
        raise TypeError(f"by must be a whole number, got {by!r}")
    if by <= 0 or not per_thread_supported():
        return None
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        new = min(MAX_NICE, now + by)
        if new != now:
            os.setpriority(os.PRIO_PROCESS, tid, new)
        return new
    except OSError as err:  # a sandbox that forbids it: same results, a little slower
        log.debug("could not lower thread %d's priority: %s", tid, err)
        return None


def run_lowered(fn, by: int, name: str = "dfd-lowered", on_interrupt=None):
    """``fn()`` in a new thread whose nice value is raised by ``by``; its result, or its
    exception raised here. The caller waits (the work runs at once, only at lower priority),
    and its own priority is untouched. When the caller is interrupted while it waits
    (Ctrl-C), ``on_interrupt()`` is called (it should make ``fn`` return soon), the thread is
    waited for, and the interrupt is raised; without ``on_interrupt`` it is raised at once
    (the thread, a daemon, runs on)."""
    box: dict = {}
    # its own end marker: Thread.is_alive() can read False after an interrupted join()
    done = threading.Event()

    def target():
        try:
            lower_this_thread(by)
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - raised again in the caller
            box["error"] = err
        finally:
            done.set()

    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    try:
        done.wait()  # interruptible (Ctrl-C), like join()
        th.join()
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
            done.wait()
        raise
    err = box.pop("error", None)
    value = box.pop("value", None)
    if err is None:
        return value
    try:
        raise err
    finally:
        del err  # the traceback refers to this frame: no cycle keeps the work's data alive
