"""Crash-safe bookkeeping of a ``dfd prep`` run: atomic files, the journal, ``failures.csv``.

Every file a run writes is either complete or recognisably incomplete, whenever the run is
killed (``kill -9`` included):

* :func:`atomic_write` writes ``NAME.tmp``, fsyncs it and renames it over ``NAME``: readers see
  the old file or the new one, never half of one. Leftover ``.tmp`` files are removed on the
  next run.
* :class:`ResultJournal` keeps the encoded records of every item that has finished but is not
  yet in a complete shard, one atomically written file per item in ``journal/``. Items finish
  in any order (parallel workers), but shards are filled in manifest order; the journal holds
  the items that wait for an earlier one, and lets a re-run reuse them instead of redoing
  them. An item's journal file is removed once the shard holding it is complete.
* :class:`FailureLog` appends one row per failed item to ``failures.csv`` and fsyncs it. The
  header is written with the file (atomically), and :func:`read_failure_rows` reads back any
  state a kill can leave: a missing, empty, headerless file or one whose last row was cut
  short (that row is dropped: its item is simply redone).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ["video_id", "path", "member", "label", "status", "reason"]
JOURNAL_DIR = "journal"
_ENC = {"encoding": "utf-8", "errors": "surrogateescape"}  # odd file names round-trip


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on every platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through ``path.tmp`` + fsync + rename."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(**_ENC)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


# ------------------------------------------------------------------ failures.csv


def read_failure_rows(path: str | Path) -> list[dict]:
    """The complete rows of a ``failures.csv``, whatever state a killed run left it in.

    A missing or empty file has no rows; a file without the header line is read with the
    standard columns; a last row cut short by a kill (no final newline, or too few fields) is
    dropped with a warning.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode(**_ENC)
    except FileNotFoundError:
        return []
    if not text.strip():
        return []
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if rows and rows[0] == FAILURE_COLUMNS:
        rows = rows[1:]
    elif rows:
        log.warning("%s has no header line; reading it with the columns %s", path,
                    ",".join(FAILURE_COLUMNS))
    if rows and not text.endswith("\n"):
        log.warning("%s: dropping its last row, cut short by an interrupted run: %r",
                    path, rows[-1])
        rows = rows[:-1]
    out = []
    for i, row in enumerate(rows):
        if not row:
            continue
        if len(row) != len(FAILURE_COLUMNS):
            log.warning("%s: skipping a malformed row %d (%d fields, expected %d): %r", path,
                        i + 1, len(row), len(FAILURE_COLUMNS), row)
            continue
        out.append(dict(zip(FAILURE_COLUMNS, row)))
    return out


def _csv_text(rows: list[dict], header: bool) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, FAILURE_COLUMNS, lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


class FailureLog:
    """Append-only ``failures.csv``: rewritten clean (header + the complete rows of an earlier
    run, minus ``drop_ids``) when opened, then one fsynced row per :meth:`add`."""

    def __init__(self, path: str | Path, drop_ids: set[str] | frozenset = frozenset()):
        self.path = Path(path)
        kept = [r for r in read_failure_rows(self.path) if r["video_id"] not in drop_ids]
        atomic_write(self.path, _csv_text(kept, header=True))
        self._fh = open(self.path, "a", newline="", **_ENC)  # noqa: SIM115 - open for the run
        self.count = 0

    def add(self, item: dict, status: str, reason: str) -> None:
        row = {"video_id": item["video_id"], "path": item["path"],
               "member": item.get("member", "") or "", "label": item["label"],
               "status": status, "reason": reason}
        self._fh.write(_csv_text([row], header=False))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.count += 1
        log.warning("%s: %s (%s)", item["video_id"], status, reason)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ the journal

Encoded = tuple[bytes, int, int]  # (encoded record, faces in it, track)


class ResultJournal:
    """Finished items' encoded records, one file per item, until their shard is complete.

    A file is ``{"video_id": ..., "records": [[bytes, faces, track], ...]}`` on one JSON line,
    then the records' bytes back to back; it is written atomically (:func:`atomic_write`), so
    it exists whole or not at all. A file whose length does not match its header is removed
    when read (its item is redone).
    """

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / JOURNAL_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def _path(self, video_id: str) -> Path:
        digest = hashlib.sha1(video_id.encode(**_ENC)).hexdigest()
        return self.dir / f"{digest}.rec"

    def put(self, video_id: str, records: list[Encoded]) -> None:
        head = {"video_id": video_id, "records": [[len(d), int(n), int(t)] for d, n, t in records]}
        atomic_write(self._path(video_id),
                     json.dumps(head).encode(**_ENC) + b"\n" + b"".join(d for d, _, _ in records))

    def _read(self, path: Path) -> tuple[str, list[Encoded]] | None:
        try:
            raw = path.read_bytes()
            nl = raw.index(b"\n")
            head = json.loads(raw[:nl].decode(**_ENC))
            sizes = [int(s) for s, _, _ in head["records"]]
            if nl + 1 + sum(sizes) != len(raw):
                raise ValueError(f"{len(raw)} bytes, header says {nl + 1 + sum(sizes)}")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError) as err:
            log.warning("removing a damaged journal file %s: %s", path, err)
            path.unlink(missing_ok=True)
            return None
        out, pos = [], nl + 1
        for (size, n_faces, track) in head["records"]:
            out.append((raw[pos:pos + size], int(n_faces), int(track)))
            pos += size
        return head["video_id"], out

    def get(self, video_id: str) -> list[Encoded]:
        got = self._read(self._path(video_id))
        if got is None or got[0] != video_id:
            raise KeyError(f"no journal entry for {video_id!r} in {self.dir}")
        return got[1]

    def ids(self) -> set[str]:
        """Ids of the items the journal holds (damaged entries are removed)."""
        found = set()
        for p in self.dir.glob("*.rec"):
            got = self._read(p)
            if got is not None:
                found.add(got[0])
        return found

    def discard(self, video_ids) -> None:
        for vid in video_ids:
            self._path(vid).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the journal folder when nothing is left in it."""
        try:
            self.dir.rmdir()
        except OSError:
            pass
