"""What ``dfd evaluate`` reads: a video score table or ``dfd detect``'s CSV, and true labels.

Two score tables are accepted:

* the package's video table (``dfd predict``: :data:`dfd.scores.VIDEO_COLUMNS`), keyed by
  ``video_id``, whose ``label`` column holds the TRUE labels of the shards;
* the CSV of ``dfd detect`` (``video, p_fake, verdict, threshold, ...``), keyed by the video's
  path. Its ``verdict`` is the model's PREDICTION (``FAKE`` when ``p_fake >= threshold``),
  never a truth; detect's older CSV called that column ``label``. A table carrying detect's
  marks (a ``verdict`` or ``threshold`` column) never gives truth labels: they come from
  ``--labels``, and without it the table is refused (else the predictions would be scored
  against themselves: accuracy 1.0).

True labels (``--labels``): a CSV with ``video`` (or ``video_id``) and ``label`` (FAKE/REAL,
1/0, df/real: :func:`dfd.labels.parse_label`). They are joined to the scores by file name:
the full path when it matches, else the base name (``clip.mp4``), else the name without its
extension (``clip``), each only when it names one video on both sides. Scores without a truth
and truths without a score are counted and named in the log; nothing matching at all is an
error naming examples from both sides.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from dfd.labels import UNKNOWN, parse_label
from dfd.scores import read_table

log = logging.getLogger(__name__)

#: columns that mark a table as ``dfd detect``'s output (predictions, not truths)
DETECT_MARKS = ("verdict", "threshold")
KEY_COLUMNS = ("video_id", "video")


def is_detect_table(table: pd.DataFrame) -> bool:
    """Whether ``table`` carries ``dfd detect``'s marks (its labels are predictions)."""
    return any(c in table.columns for c in DETECT_MARKS)


def _read_any(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"score table not found: {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"video_id": str, "video": str, "error": str})


def read_scores(path, have_truth: bool = False) -> pd.DataFrame:
    """A video table (``video_id, label, p_fake, status, ...``) from a score table or from
    ``dfd detect``'s CSV. A detect table's ``verdict`` / old ``label`` column is dropped (it is
    a prediction); without ``have_truth`` (true labels to join) such a table is refused."""
    raw = _read_any(path)
    if not is_detect_table(raw):
        if "video_id" not in raw.columns and "video" in raw.columns:
            raw = raw.rename(columns={"video": "video_id"})
        missing = [c for c in ("video_id", "p_fake") if c not in raw.columns]
        if missing:
            raise ValueError(f"{path} is not a score table: it lacks column(s) {missing} "
                             f"(a video table needs video_id (or video) and p_fake; dfd detect's "
                             f"CSV has video, p_fake, verdict); its columns are {list(raw.columns)}")
        return read_table(path) if "video_id" in _read_any(path).columns else _tidy(raw)
    predicted = [c for c in ("verdict", "label") if c in raw.columns]
    if not have_truth:
        raise ValueError(
            f"{path} is dfd detect output: its {'/'.join(predicted) or 'verdict'} column is the "
            f"model's prediction (FAKE when p_fake >= threshold), not the truth, so scoring it "
            f"would compare the model with itself; pass the true labels with --labels "
            f"truth.csv (columns video,label with FAKE/REAL or 1/0)")
    key = "video" if "video" in raw.columns else "video_id"
    missing = [c for c in (key, "p_fake") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path} looks like dfd detect output but lacks column(s) {missing}; "
                         f"has {list(raw.columns)}")
    out = raw.drop(columns=predicted).rename(columns={key: "video_id"})
    out["label"] = UNKNOWN
    return _tidy(out)


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["video_id"] = df["video_id"].astype(str)
    if "error" in df.columns:
        df["error"] = df["error"].fillna("")
    return df


def read_truth(path) -> pd.DataFrame:
    """True labels: ``video`` (or ``video_id``) and ``label``; a table of dfd detect's output
    is refused (its labels are predictions)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labels file not found: {path}")
    df = pd.read_csv(path, dtype={"video_id": str, "video": str})
    if is_detect_table(df):
        raise ValueError(f"labels file {path} is dfd detect output (it has column(s) "
                         f"{[c for c in DETECT_MARKS if c in df.columns]}): its labels are "
                         f"predictions; give the true labels (video,label)")
    key = next((c for c in KEY_COLUMNS if c in df.columns), None)
    missing = ([] if key else ["video (or video_id)"]) + ([] if "label" in df.columns else ["label"])
    if missing:
        raise ValueError(f"labels file {path} lacks column(s) {missing}; it needs video (or "
                         f"video_id) and label (FAKE/REAL or 1/0); has {list(df.columns)}")
    out = pd.DataFrame({"video": df[key].astype(str).str.strip(),
                        "label": [parse_label(v) for v in df["label"]]})
    return out


def _unique_map(keys, values) -> dict:
    """``key -> value`` for keys that occur once (ambiguous keys are left out)."""
    s = pd.Series(list(values), index=list(keys))
    counts = s.index.value_counts()
    return {k: s[k] for k in counts.index[counts == 1]}


def _name(p: str) -> str:
    return PurePath(p.replace("\\", "/")).name


def _stem(p: str) -> str:
    return PurePath(_name(p)).stem


def match_videos(score_keys, truth_keys) -> dict[str, str]:
    """``score key -> truth key``: the same path, else the same base name, else the same
    name without extension (each only when it names one video on both sides)."""
    score_keys = [str(k) for k in score_keys]
    truth_keys = [str(k) for k in truth_keys]
    out: dict[str, str] = {}
    truth_set = set(truth_keys)
    for k in score_keys:
        if k in truth_set:
            out[k] = k
    for how in (_name, _stem):
        truth_by = _unique_map([how(t) for t in truth_keys], truth_keys)
        score_by = _unique_map([how(s) for s in score_keys], score_keys)
        taken = set(out.values())
        for key, s in score_by.items():
            t = truth_by.get(key)
            if s not in out and t is not None and t not in taken:
                out[s] = t
                taken.add(t)
    return out


def join_truth(videos: pd.DataFrame, truth: pd.DataFrame, what: str = "scores") -> pd.DataFrame:
    """``videos`` with ``label`` from ``truth`` (:func:`read_truth`), joined by file name. A
    known label in ``videos`` that disagrees with the truth is a ``ValueError``."""
    ids = videos["video_id"].astype(str).tolist()
    pairs = match_videos(ids, truth["video"])
    if not pairs:
        raise ValueError(f"no video of the {what} matches the labels file, by path, file name or "
                         f"name without extension: {what} have e.g. {ids[:3]}, the labels "
                         f"e.g. {truth['video'].tolist()[:3]}")
    given = dict(zip(truth["video"], truth["label"]))
    new = np.array([given[pairs[i]] if i in pairs else UNKNOWN for i in ids])
    out = videos.copy()
    old = (np.array([parse_label(v) for v in out["label"]]) if "label" in out.columns
           else np.full(len(out), UNKNOWN))
    clash = (old != UNKNOWN) & (new != UNKNOWN) & (old != new)
    if clash.any():
        bad = out.loc[clash, "video_id"].astype(str).tolist()
        raise ValueError(f"labels file disagrees with the {what} table for {len(bad)} video(s): "
                         f"{bad[:10]}")
    out["label"] = np.where(new != UNKNOWN, new, old)
    no_truth = [i for i in ids if i not in pairs]
    unused = sorted(set(truth["video"]) - set(pairs.values()))
    if no_truth:
        log.warning("%d of %d scored video(s) have no label in the labels file (left out of the "
                    "metrics): %s", len(no_truth), len(ids), no_truth[:5])
    if unused:
        log.warning("%d labelled video(s) have no score in the %s table: %s", len(unused), what,
                    unused[:5])
    return out


def load_videos(scores, labels=None, what: str = "scores") -> pd.DataFrame:
    """The video table ``dfd evaluate`` scores: ``scores`` (a score table or dfd detect's CSV)
    with the true ``labels`` file joined when given."""
    truth = read_truth(labels) if labels else None
    videos = read_scores(scores, have_truth=truth is not None)
    if "label" not in videos.columns:
        videos["label"] = UNKNOWN
    if truth is not None:
        videos = join_truth(videos, truth, what)
    return videos
