"""Writing ``dfd detect`` results: one row per video as it finishes, CSV or JSON lines."""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from contextlib import nullcontext

from dfd.config import json_safe
from dfd_app.detect import pipeline

log = logging.getLogger(__name__)


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def to_json(rec: dict) -> str:
    """One result as a JSON line (NaN -> null)."""
    return json.dumps(json_safe(rec), separators=(",", ":"), allow_nan=False)


class RowWriter:
    """Writes results one by one (flushed), as CSV rows or JSON lines."""

    def __init__(self, fh, fmt: str = "csv"):
        self.fh, self.fmt = fh, fmt
        if fmt == "csv":
            self._csv = csv.DictWriter(fh, fieldnames=pipeline.CSV_COLUMNS, extrasaction="ignore",
                                       lineterminator="\n")
            self._csv.writeheader()
        elif fmt != "jsonl":
            raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")

    def write(self, rec: dict) -> None:
        if self.fmt == "csv":
            self._csv.writerow({k: _csv_value(rec.get(k, "")) for k in pipeline.CSV_COLUMNS})
        else:
            self.fh.write(to_json(rec) + "\n")
        self.fh.flush()


def detect_to(items, ctx, out: str | None, fmt: str, progress=None) -> int:
    """Stream results of ``items`` to ``out`` (None: stdout), updating ``progress`` (a tqdm
    bar, or None); returns the exit status (1 when any row is an error)."""
    counts = {"ok": 0, "no_face": 0, "error": 0}
    target = open(out, "w", newline="", encoding="utf-8") if out else nullcontext(sys.stdout)
    with target as fh, (progress if progress is not None else nullcontext()) as bar:
        writer = RowWriter(fh, fmt)
        for rec in pipeline.iter_detect(items, ctx):
            writer.write(rec)
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
            if bar is not None:
                bar.update(1)
            if rec["status"] != "ok":
                log.warning("%s: %s (%s)", rec["video"], rec["status"], rec["error"])
    log.info("%d video(s): %d scored, %d without a face, %d failed", sum(counts.values()),
             counts["ok"], counts["no_face"], counts["error"])
    return 1 if counts["error"] else 0
