"""Writing ``dfd detect`` results: one row per video as it finishes, CSV or JSON lines.

Rows are written whole and flushed one by one, so whatever stops a batch (an output error, a
kill, Ctrl-C) leaves every row written before it intact; a row cut by a failing write to a
file (a full disk) is cut off again, so the file ends with the last whole row.

File names need not be valid UTF-8 (on POSIX they are bytes): Python holds such bytes as
surrogate escapes (``os.fsdecode``). Every text value is written with those bytes as
``\\xNN`` (:func:`safe_text`), so the CSV and the JSON lines stay valid UTF-8 and one odd name
never stops the batch.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import stat
import sys
from contextlib import nullcontext

from dfd.config import json_safe
from dfd_app.detect import pipeline

log = logging.getLogger(__name__)


class OutputError(Exception):
    """The results cannot be written (full disk, a folder, a closed pipe...); names the target."""

    def __init__(self, target: str, err: BaseException):
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        super().__init__(f"cannot write the results to {safe_text(target)}: {reason}")
        self.target, self.reason = target, reason
        self.broken_pipe = isinstance(err, BrokenPipeError)


def safe_text(s: str) -> str:
    """``s`` as valid Unicode: bytes of a file name that are not UTF-8 (held by Python as
    surrogate escapes) become ``\\xNN``; any other lone surrogate becomes ``\\udXXX``."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_record(value):
    """A copy of a result with every string made :func:`safe_text` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(str(k)): safe_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_record(v) for v in value]
    return value


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def to_json(rec: dict) -> str:
    """One result as a JSON line (NaN -> null, file names made :func:`safe_text`)."""
    return json.dumps(safe_record(json_safe(rec)), separators=(",", ":"), allow_nan=False)


def format_row(rec: dict, fmt: str) -> str:
    """One result as one line of text (with its newline), CSV or JSON."""
    if fmt == "jsonl":
        return to_json(rec) + "\n"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [_csv_value(safe_record(rec.get(k, ""))) for k in pipeline.CSV_COLUMNS])
    return buf.getvalue()


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(pipeline.CSV_COLUMNS)
    return buf.getvalue()


class RowWriter:
    """Writes results one by one, each line whole and flushed, as CSV rows or JSON lines.

    ``fh`` is a text stream (stdout) or a binary file; on a binary regular file a failed
    write is cut back to the last whole row. Write errors raise :class:`OutputError`.
    """

    def __init__(self, fh, fmt: str = "csv", name: str = "stdout"):
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
        self.fh, self.fmt, self.name = fh, fmt, name
        self._binary = not isinstance(fh, io.TextIOBase)
        self._good = 0  # bytes of whole rows in a binary file
        if fmt == "csv":
            self._put(csv_header())

    def write(self, rec: dict) -> None:
        self._put(format_row(rec, self.fmt))

    def _put(self, line: str) -> None:
        try:
            if self._binary:
                raw = line.encode("utf-8", "backslashreplace")
                rest = memoryview(raw)
                while rest:  # an unbuffered file: nothing is left to flush at close
                    n = self.fh.write(rest)
                    if not n:
                        raise OSError(errno.EIO, "the file took no bytes")
                    rest = rest[n:]
                self._good += len(raw)
            else:
                self.fh.write(line)
                self.fh.flush()
        except (OSError, ValueError) as err:  # ValueError: a closed stream
            self._cut_back()
            raise OutputError(self.name, err) from None

    def _cut_back(self) -> None:
        """Drop a partly written row from a regular file (the buffer and the disk)."""
        if not self._binary:
            return
        try:
            fd = self.fh.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.ftruncate(fd, self._good)
        except (OSError, ValueError):
            pass


def open_output(out: str | None):
    """The stream results go to: ``out`` opened for writing (binary), or stdout.

    A file that cannot be opened (a folder, no permission, a missing folder) raises
    :class:`OutputError` before any video is scored.
    """
    if out is None:
        return sys.stdout
    try:
        return open(out, "wb", buffering=0)
    except OSError as err:
        raise OutputError(out, err) from None


def _close_quietly(fh) -> None:
    try:
        fh.close()
    except OSError:  # the flush of a failed write fails again: the file is closed anyway
        pass


def detect_to(items, ctx, out: str | None, fmt: str, progress=None) -> int:
    """Stream results of ``items`` to ``out`` (None: stdout), updating ``progress`` (a tqdm
    bar, or None); returns the exit status (1 when any row is an error).

    Raises :class:`OutputError` (naming ``out`` and the problem) when the results cannot be
    written; the rows written before stay whole.
    """
    counts = {"ok": 0, "no_face": 0, "error": 0}
    fh = open_output(out)
    name = out if out is not None else "stdout"
    try:
        with (progress if progress is not None else nullcontext()) as bar:
            writer = RowWriter(fh, fmt, name)
            for rec in pipeline.iter_detect(items, ctx):
                writer.write(rec)
                counts[rec["status"]] = counts.get(rec["status"], 0) + 1
                if bar is not None:
                    bar.update(1)
                if rec["status"] != "ok":
                    log.warning("%s: %s (%s)", safe_text(rec["video"]), rec["status"],
                                safe_text(str(rec["error"])))
    finally:
        if out is not None:
            _close_quietly(fh)
    log.info("%d video(s): %d scored, %d without a face, %d failed", sum(counts.values()),
             counts["ok"], counts["no_face"], counts["error"])
    return 1 if counts["error"] else 0
