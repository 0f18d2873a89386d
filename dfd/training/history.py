"""The run's per-epoch history: ``history.csv`` (appended each epoch) and ``history.json``.

Both training paths write the same CSV (Keras' ``CSVLogger`` format: an ``epoch`` column,
then the metric names sorted). A run resumed after a crash may repeat an epoch row; readers
keep the last row of each epoch.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from dfd.config import json_safe

HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history CSV, one per epoch (the last one written wins), sorted by epoch."""
    path = Path(path)
    if not path.exists():
        return []
    rows: dict[int, dict] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                epoch = int(row.pop("epoch"))
            except (KeyError, ValueError, TypeError):
                continue
            rows[epoch] = {"epoch": epoch, **{k: _num(v) for k, v in row.items() if k}}
    return [rows[e] for e in sorted(rows)]


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def append_row(path: str | Path, epoch: int, logs: dict) -> None:
    """Append one epoch, writing the header when the file is new (``CSVLogger`` layout)."""
    path = Path(path)
    keys = sorted(logs)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["epoch", *keys])
        if new:
            writer.writeheader()
        writer.writerow({"epoch": epoch, **{k: logs[k] for k in keys}})


def best_so_far(rows: list[dict], monitor: str, since_epoch: int = 0):
    """``(best value, epochs since it)`` of ``monitor`` over rows with epoch >= since_epoch."""
    vals = [(r["epoch"], r[monitor]) for r in rows
            if r["epoch"] >= since_epoch and not math.isnan(r.get(monitor, math.nan))]
    if not vals:
        return None, 0
    best_epoch, best = max(vals, key=lambda t: (t[1], -t[0]))
    return best, vals[-1][0] - best_epoch


def write_history_json(run_dir: str | Path) -> dict[str, list]:
    """Column-wise history (``{"epoch": [...], "loss": [...], ...}``) saved as history.json."""
    rows = read_history(Path(run_dir) / HISTORY_CSV)
    keys = sorted({k for r in rows for k in r} - {"epoch"})
    hist = {"epoch": [r["epoch"] for r in rows]}
    hist.update({k: [r.get(k, math.nan) for r in rows] for k in keys})
    (Path(run_dir) / HISTORY_JSON).write_text(json.dumps(json_safe(hist), indent=1) + "\n")
    return hist
