"""Lines that C++ libraries write straight to file descriptor 2, filtered.

TensorFlow (at import) and its Lite interpreter (when it creates its XNNPACK delegate) print
notices to the process's stderr from C++, past Python's logging and whatever
``TF_CPP_MIN_LOG_LEVEL`` says. :func:`stderr_fd_filtered` captures the descriptor for a while
and writes back only the lines a predicate keeps, so a real problem still reaches the user.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager

#: one capture at a time: two threads swapping descriptor 2 would leave it on a closed file
_LOCK = threading.RLock()


@contextmanager
def stderr_fd_filtered(drop):
    """Capture file descriptor 2 for a while (C++ libraries write there directly), then write
    back the lines for which ``drop(line)`` is false. Where the descriptor cannot be duplicated
    (no real stderr) the block runs unfiltered. Captures are serialised (one lock): while one
    runs, another thread's block waits."""
    with _LOCK:
        yield from _filtered(drop)


def _filtered(drop):
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with tempfile.TemporaryFile() as buf:
            os.dup2(buf.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                buf.seek(0)
                kept = [ln for ln in buf.read().splitlines(keepends=True)
                        if not drop(ln.decode(errors="replace"))]
                if kept:
                    os.write(saved, b"".join(kept))
    finally:
        os.close(saved)
