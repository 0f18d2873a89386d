"""Score tables: the one format models write and evaluation, the stacker and ``dfd detect`` read.

Frame table (one row per scored face)::

    video_id, track, frame_index, p_fake, model

Video table (one row per video)::

    video_id, label, p_fake, n_frames, n_faces, status, error, model, aggregation

``p_fake`` is always P(fake) (:mod:`dfd.labels`). ``status`` is ``"ok"`` when the video got a
score, ``"no_face"`` when no face was found (``p_fake`` is NaN: never a silent 0.5) and
``"error"`` when the video could not be read (``error`` says why); ``dfd detect`` also writes
``"partial"`` (scored, but only part of the video decoded: docs/faces.md).

Aggregations from frame scores to a video score, chosen by name:

* ``mean``: the mean P(fake) of all faces.
* ``vote``: the original MesoNet rule: the fraction of faces scored over 0.5.
* ``confident``: the DFDC-winner rule: when at least ``min_fraction`` of faces are
  confidently fake (P >= ``high``), average those; else when that many are confidently real
  (P <= ``low``), average those; else the mean.
* ``max``: the largest face score (sensitive; for screening).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dfd.labels import UNKNOWN

FRAME_COLUMNS = ["video_id", "track", "frame_index", "p_fake", "model"]
#: optional column of video tables scored from shards: the record's source (shards' context)
SOURCE_COLUMN = "source"
VIDEO_COLUMNS = [
    "video_id", "label", "p_fake", "n_frames", "n_faces", "status", "error", "model",
    "aggregation",
]
STATUS_OK, STATUS_NO_FACE, STATUS_ERROR = "ok", "no_face", "error"
#: scored, but only part of the video decoded (``error`` says how much; see docs/faces.md)
STATUS_PARTIAL = "partial"


def agg_mean(p: np.ndarray) -> float:
    return float(np.mean(p))


def agg_vote(p: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean(p > threshold))


def agg_max(p: np.ndarray) -> float:
    return float(np.max(p))


def agg_confident(p: np.ndarray, high: float = 0.8, low: float = 0.2,
                  min_fraction: float = 0.4) -> float:
    p = np.asarray(p, dtype=np.float64)
    fake, real = p[p >= high], p[p <= low]
    if len(fake) >= min_fraction * len(p):
        return float(fake.mean())
    if len(real) >= min_fraction * len(p):
        return float(real.mean())
    return float(p.mean())


AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": agg_mean,
    "vote": agg_vote,
    "confident": agg_confident,
    "max": agg_max,
}


def aggregate(p_fake, how: str = "mean") -> float:
    """Video score from frame scores by a named rule; NaN for no frames."""
    try:
        fn = AGGREGATIONS[how]
    except KeyError:
        raise ValueError(f"unknown aggregation {how!r}; choose from {sorted(AGGREGATIONS)}") from None
    p = np.asarray(p_fake, dtype=np.float64)
    p = p[~np.isnan(p)]
    if p.size == 0:
        return float("nan")
    return fn(p)


def video_scores(frames: pd.DataFrame, how: str = "mean", labels: dict | None = None,
                 model: str | None = None, track: str = "max") -> pd.DataFrame:
    """Aggregate a frame table into a video table.

    With several tracks (people) in a video, each track is aggregated and the video takes
    the ``track`` rule over them (``max``: a video is as fake as its most suspicious person).
    ``labels`` maps video id to label (1/0/-1); missing ids get -1.
    """
    missing = set(FRAME_COLUMNS[:4]) - set(frames.columns)
    if missing:
        raise ValueError(f"frame table lacks column(s) {sorted(missing)}; has {list(frames.columns)}")
    rows = []
    for vid, g in frames.groupby("video_id", sort=False):
        per_track = [aggregate(t["p_fake"].to_numpy(), how) for _, t in g.groupby("track")]
        p = float(np.nanmax(per_track)) if track == "max" else float(np.nanmean(per_track))
        rows.append({
            "video_id": vid,
            "label": int(labels.get(vid, UNKNOWN)) if labels else UNKNOWN,
            "p_fake": p,
            "n_frames": int(g["frame_index"].nunique()),
            "n_faces": int(len(g)),
            "status": STATUS_OK,
            "error": "",
            "model": model or (str(g["model"].iloc[0]) if "model" in g else ""),
            "aggregation": how,
        })
    return pd.DataFrame(rows, columns=VIDEO_COLUMNS)


def failure_row(video_id: str, status: str, error: str, label: int = UNKNOWN, model: str = "",
                aggregation: str = "", n_frames: int = 0) -> dict:
    """A video-table row for a video without a score (``p_fake`` NaN, never 0.5)."""
    if status not in (STATUS_NO_FACE, STATUS_ERROR):
        raise ValueError(f"failure status must be {STATUS_NO_FACE!r} or {STATUS_ERROR!r}, got {status!r}")
    return {
        "video_id": video_id, "label": label, "p_fake": float("nan"), "n_frames": n_frames,
        "n_faces": 0, "status": status, "error": error, "model": model, "aggregation": aggregation,
    }


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a score table as CSV or Parquet (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix in (".csv", ".gz"):
        df.to_csv(path, index=False)
    else:
        raise ValueError(f"score table path {path} must end in .csv or .parquet")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a frame or video score table written by :func:`write_table`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"score table not found: {path}")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, keep_default_na=True, dtype={"video_id": str, "error": str})
    if "video_id" not in df.columns or "p_fake" not in df.columns:
        raise ValueError(f"{path} is not a score table: columns {list(df.columns)}")
    if "error" in df.columns:
        df["error"] = df["error"].fillna("")
    return df
