"""Writes :class:`dfd.schema.FaceRecord` s into numbered TFRecord shards, crash-safely.

A shard is written as ``NAME.tfrecord.tmp``, flushed and fsynced, renamed to
``NAME.tfrecord``, and only then described by a sidecar ``NAME.json`` (records, faces,
bytes, the ids it holds). A shard counts as complete only when its sidecar exists and its
size matches: a run killed at any point leaves either a finished shard or a leftover that
:func:`cleanup_incomplete` removes, never a half-written shard that looks complete. The set
of finished items is read back from the sidecars (:func:`finished_ids`), which is what makes
``dfd prep`` resumable.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from dfd import schema

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"


class ShardWriter:
    """Append records to shards named ``{prefix}-{n:05d}.tfrecord`` in ``out_dir``.

    A shard is closed after ``max_records`` records or ``max_bytes`` bytes, whichever comes
    first; ``on_commit(info, ids)`` is called after each shard is complete on disk.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str,
        max_records: int = 256,
        max_bytes: int = 200 * 2**20,
        on_commit: Callable[[schema.ShardInfo, list[str]], None] | None = None,
    ):
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.on_commit = on_commit
        self.committed: list[schema.ShardInfo] = []
        self._n = self._next_number()
        self._fh = None
        self._ids: list[str] = []
        self._faces = 0
        self._bytes = 0

    def _next_number(self) -> int:
        taken = [
            int(p.name[len(self.prefix) + 1 :].split(".")[0])
            for p in self.out_dir.glob(f"{self.prefix}-*{schema.SHARD_SUFFIX}*")
            if p.name[len(self.prefix) + 1 :].split(".")[0].isdigit()
        ]
        return max(taken, default=-1) + 1

    @property
    def _name(self) -> str:
        return f"{self.prefix}-{self._n:05d}{schema.SHARD_SUFFIX}"

    def add(self, rec: schema.FaceRecord) -> None:
        """Encode and append one record."""
        self.add_serialized(schema.encode_record(rec), rec.video_id, len(rec.faces), rec.track)

    def add_serialized(self, data: bytes, video_id: str, n_faces: int, track: int = 0,
                       autoflush: bool = True) -> None:
        """Append one record already encoded by :func:`dfd.schema.encode_record`.

        With ``autoflush=False`` the shard is not closed even when full: callers writing
        several records of one item (tracks of a video) call :meth:`maybe_flush` after the
        last, so an item never straddles two shards.
        """
        import tensorflow as tf

        if self._fh is None:
            self._tmp = self.out_dir / (self._name + ".tmp")
            self._fh = tf.io.TFRecordWriter(str(self._tmp))
            self._opened = time.monotonic()
        self._fh.write(data)
        self._ids.append(video_id if track == 0 else f"{video_id}#{track}")
        self._faces += n_faces
        self._bytes += len(data) + 16
        if autoflush:
            self.maybe_flush()

    def maybe_flush(self, max_seconds: float | None = None) -> None:
        """Close the shard when full, or when open longer than ``max_seconds``."""
        if self._fh is None:
            return
        if (len(self._ids) >= self.max_records or self._bytes >= self.max_bytes
                or (max_seconds is not None and self.open_seconds() > max_seconds)):
            self.flush()

    def open_seconds(self) -> float:
        """How long the current shard has been open (0 when none is)."""
        return time.monotonic() - self._opened if self._fh is not None else 0.0

    def flush(self) -> schema.ShardInfo | None:
        """Close the open shard (if any) and make it complete on disk."""
        if self._fh is None:
            return None
        self._fh.flush()
        self._fh.close()
        self._fh = None
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = self.out_dir / self._name
        os.replace(self._tmp, final)
        info = schema.ShardInfo(
            file=final.name, records=len(self._ids), faces=self._faces, bytes=final.stat().st_size
        )
        sidecar = final.with_suffix(SIDECAR_SUFFIX)
        tmp = sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**info.__dict__, "ids": self._ids}) + "\n")
        os.replace(tmp, sidecar)
        log.debug("committed shard %s (%d records, %d faces)", final.name, info.records, info.faces)
        self.committed.append(info)
        ids, self._ids, self._faces, self._bytes = self._ids, [], 0, 0
        self._n += 1
        if self.on_commit:
            self.on_commit(info, ids)
        return info

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif self._fh is not None:  # leave no partial shard behind
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)


def _complete_shards(out_dir: Path):
    for sidecar in sorted(out_dir.glob(f"*{SIDECAR_SUFFIX}")):
        if sidecar.name == schema.INDEX_FILE:
            continue
        shard = sidecar.with_suffix(schema.SHARD_SUFFIX)
        try:
            meta = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if shard.exists() and shard.stat().st_size == meta.get("bytes"):
            yield shard, meta


def cleanup_incomplete(out_dir: str | Path) -> list[Path]:
    """Remove leftovers of a killed run: ``.tmp`` files and shards without a valid sidecar."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return []
    complete = {shard for shard, _ in _complete_shards(out_dir)}
    removed = []
    for p in out_dir.glob("*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    for p in out_dir.glob(f"*{schema.SHARD_SUFFIX}"):
        if p not in complete:
            p.unlink(missing_ok=True)
            p.with_suffix(SIDECAR_SUFFIX).unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning("removed %d incomplete shard file(s) in %s from an interrupted run",
                    len(removed), out_dir)
    return removed


def finished_ids(out_dir: str | Path) -> set[str]:
    """Ids of every item already held by a complete shard of ``out_dir``."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return set()
    done: set[str] = set()
    for _, meta in _complete_shards(out_dir):
        done.update(i.split("#")[0] for i in meta.get("ids", []))
    return done


def build_index(out_dir: str | Path, **stats) -> Path:
    """(Re)write ``index.json`` from the complete shards' sidecars."""
    out_dir = Path(out_dir)
    infos = [
        schema.ShardInfo(file=shard.name, records=m["records"], faces=m["faces"], bytes=m["bytes"])
        for shard, m in _complete_shards(out_dir)
    ]
    return schema.write_index(out_dir, infos, **stats)
