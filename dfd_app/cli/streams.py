"""What every ``dfd`` command does with its standard streams when they fail (stdlib only)."""

from __future__ import annotations

import os
import sys


def release_stdout() -> None:
    """Point a dead stdout (a closed pipe, a full disk) at /dev/null, so the interpreter's
    last flush at exit does not print a second error after the one line already logged."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
