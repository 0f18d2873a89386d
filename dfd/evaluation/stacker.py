"""A logistic-regression stacker over per-video scores of several models, saved as plain JSON.

Features (:func:`build_features`), joined on ``video_id``:

* a **video table** (one row per video, e.g. a temporal model's) gives one feature ``NAME``:
  its ``p_fake``;
* a **frame table** (one row per face) gives ``NAME:mean``, ``NAME:vote`` and ``NAME:max``,
  aggregated by :func:`dfd.scores.aggregate`.

The stacker (``StandardScaler`` + ``LogisticRegression``, fitted by :mod:`dfd.evaluation.stacking`,
the only part that needs scikit-learn) must be fitted on videos the base models never trained
on: a dedicated split, or use :func:`dfd.evaluation.stacking.oof_predict` for honest
out-of-fold scores. :class:`Stacker` predicts from its JSON with numpy alone (no pickle), so
that ``dfd detect`` and ``dfd serve`` do not load scikit-learn.
The original study's plain average is kept as the named baseline ``average``
(:func:`average_scores`): the mean over models of each model's primary score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from dfd.config import check_types
from dfd.labels import FAKE, REAL, UNKNOWN, parse_label
from dfd.scores import STATUS_OK, VIDEO_COLUMNS, aggregate

log = logging.getLogger(__name__)

FRAME_FEATURES = ("mean", "vote", "max")
FORMAT = "dfd-stacker/1"


class MissingScoresError(ValueError):
    """A model lacks scores for videos that other models scored."""


def is_frame_table(df: pd.DataFrame) -> bool:
    return {"track", "frame_index"} <= set(df.columns) and "status" not in df.columns


def model_features(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """Per-video features of one model, indexed by ``video_id`` (NaN where it has no score)."""
    if "video_id" not in table.columns or "p_fake" not in table.columns:
        raise ValueError(f"model {name!r}: not a score table, columns {list(table.columns)}")
    t = table.assign(video_id=table["video_id"].astype(str))
    if is_frame_table(t):
        g = t.groupby("video_id", sort=False)["p_fake"]
        return pd.DataFrame({f"{name}:{how}": g.agg(lambda s, h=how: aggregate(s.to_numpy(), h))
                             for how in FRAME_FEATURES})
    dup = t["video_id"][t["video_id"].duplicated()]
    if len(dup):
        raise ValueError(f"model {name!r}: video table repeats video id(s) {sorted(set(dup))[:10]}")
    p = pd.to_numeric(t["p_fake"], errors="coerce").astype(float)
    if "status" in t.columns:
        p = p.where(t["status"].fillna(STATUS_OK).astype(str).to_numpy() == STATUS_OK)
    return pd.DataFrame({name: p.to_numpy()}, index=pd.Index(t["video_id"], name="video_id"))


def video_labels(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Labels per video from the video tables (known labels must agree across models)."""
    found: dict[str, int] = {}
    for name, t in tables.items():
        if "label" not in t.columns:
            continue
        for vid, lab in zip(t["video_id"].astype(str), t["label"]):
            lab = parse_label(lab)
            if lab == UNKNOWN:
                continue
            if found.setdefault(vid, lab) != lab:
                raise ValueError(f"model {name!r} labels video {vid!r} {lab}, another model {found[vid]}")
    return pd.Series(found, name="label", dtype=int)


def build_features(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The feature matrix, one row per video (sorted by id), one column block per model.

    A video scored by one model but absent from another raises :class:`MissingScoresError`
    naming the model and the videos, except that a frame table may lack videos that a video
    table marks ``no_face``/``error`` (a frame table cannot hold them). Such cells, and the
    failures of video tables, are NaN.
    """
    if not tables:
        raise ValueError("no model score tables given")
    blocks = {name: model_features(name, t) for name, t in tables.items()}
    failed = set(input_status(tables).loc[lambda s: s != STATUS_OK].index)
    all_ids = sorted(set().union(*(b.index for b in blocks.values())))
    for name, b in blocks.items():
        lacking = set(all_ids) - set(b.index)
        if is_frame_table(tables[name]):
            lacking -= failed
        if lacking:
            raise MissingScoresError(f"model {name!r} has no row for {len(lacking)} video(s) that "
                                     f"other models scored: {sorted(lacking)[:10]}")
    feats = pd.concat([b.reindex(all_ids) for b in blocks.values()], axis=1)
    feats.index.name = "video_id"
    return feats


def primary_columns(feature_names) -> list[str]:
    """One column per model: the video score, or a frame table's ``:mean``."""
    return [c for c in feature_names if ":" not in c or c.endswith(":mean")]


def average_scores(feats: pd.DataFrame) -> pd.Series:
    """The study's baseline ``average``: the mean of each model's primary score."""
    return feats[primary_columns(feats.columns)].mean(axis=1, skipna=False).rename("average")


def usable_rows(feats: pd.DataFrame, y) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """``(X, y, video ids)`` of the videos with every feature and a REAL/FAKE label (a
    warning counts those left out for a missing feature); a ValueError unless both classes
    are there."""
    if isinstance(y, dict):
        y = pd.Series(y)
    y = y.reindex(feats.index) if isinstance(y, pd.Series) else pd.Series(np.asarray(y), feats.index)
    ok = feats.notna().all(axis=1) & y.isin([REAL, FAKE])
    n_nan = int((~feats.notna().all(axis=1)).sum())
    if n_nan:
        log.warning("stacker: %d video(s) without a score from every model left out", n_nan)
    X, yy = feats.loc[ok].to_numpy(float), y.loc[ok].to_numpy(int)
    if len(np.unique(yy)) < 2:
        raise ValueError(f"stacker needs labelled REAL and FAKE videos; got {len(yy)} usable "
                         f"video(s) with classes {sorted(set(yy.tolist()))}")
    return X, yy, feats.index[ok]


@dataclass
class Stacker:
    """A fitted stacker as plain numbers; ``predict`` needs numpy only."""

    feature_names: list[str]
    coef: list[float]
    intercept: float
    scaler_mean: list[float]
    scaler_scale: list[float]
    n_train: int
    n_train_fake: int
    C: float = 1.0
    versions: dict = field(default_factory=dict)
    created: str = ""
    fit_report: dict = field(default_factory=dict)
    format: str = FORMAT
    fit_videos: str = ""  # videos_fingerprint() of the videos it was fitted on ("" = unknown)

    def fitted_on(self, feats: pd.DataFrame, y) -> bool | None:
        """Whether the usable videos of ``feats`` are exactly those it was fitted on (None:
        a stacker saved without a fingerprint)."""
        if not self.fit_videos:
            return None
        _, _, idx = usable_rows(feats[self.feature_names], y)
        return videos_fingerprint(idx) == self.fit_videos

    def decision(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"stacker expects {len(self.feature_names)} features "
                             f"{self.feature_names}, got shape {X.shape}")
        Z = (X - np.asarray(self.scaler_mean)) / np.asarray(self.scaler_scale)
        return Z @ np.asarray(self.coef) + self.intercept

    def predict_proba(self, X) -> np.ndarray:
        """P(fake) per row; rows with a NaN feature give NaN."""
        return expit(self.decision(X))

    def predict_features(self, feats: pd.DataFrame) -> pd.Series:
        """P(fake) per video from a feature frame holding (at least) the stacker's features."""
        missing = [c for c in self.feature_names if c not in feats.columns]
        if missing:
            raise MissingScoresError(f"stacker needs feature(s) {missing}; the given models give "
                                     f"{list(feats.columns)}")
        return pd.Series(self.predict_proba(feats[self.feature_names].to_numpy(float)),
                         index=feats.index, name="p_fake")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Stacker:
        """Read a stacker JSON; a ValueError naming the file and what is wrong with it (not
        JSON, another format, unknown or missing fields, numbers that do not fit)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"stacker file {path} is not valid JSON: {err}") from None
        except UnicodeDecodeError:
            raise ValueError(f"stacker file {path} is not a text (JSON) file") from None
        if not isinstance(d, dict):
            raise ValueError(f"stacker file {path} holds a JSON {type(d).__name__}, not an object")
        if d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a stacker file (format {d.get('format')!r}, expected {FORMAT!r})")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"stacker file {path}: unknown field(s) {unknown}; known: {sorted(known)}")
        missing = [f.name for f in fields(cls) if f.name not in d
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"stacker file {path} lacks field(s) {missing}")
        check_types(cls, d, f"stacker file {path}: ", strict=True)
        _check_numbers(path, d)
        return cls(**d)

    @property
    def models(self) -> list[str]:
        return sorted({c.split(":")[0] for c in self.feature_names})


def _finite(x) -> bool:
    """Whether a number read from JSON is finite (an integer too large for a float is not)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, OverflowError):
        return False


def _check_numbers(path: Path, d: dict) -> None:
    """What the field types (:func:`dfd.config.check_types`) do not say: names given, numbers
    finite, lengths matching the names, scales > 0, counts >= 0."""
    names = d["feature_names"]
    if not names or not all(names):
        raise ValueError(f"stacker file {path}: feature_names must be a non-empty list of "
                         f"names, got {names!r}")
    for key in ("coef", "scaler_mean", "scaler_scale"):
        if not all(map(_finite, d[key])):
            raise ValueError(f"stacker file {path}: {key} must be finite numbers, got {d[key]!r}")
        if len(d[key]) != len(names):
            raise ValueError(f"stacker file {path}: {key} has {len(d[key])} value(s) for "
                             f"{len(names)} feature(s) {names}")
    if not all(x > 0 for x in d["scaler_scale"]):
        raise ValueError(f"stacker file {path}: scaler_scale must be > 0, got {d['scaler_scale']!r}")
    for key in ("intercept", "C"):
        if key in d and not _finite(d[key]):
            raise ValueError(f"stacker file {path}: {key} must be a finite number, got {d[key]!r}")
    for key in ("n_train", "n_train_fake"):
        if d[key] < 0:
            raise ValueError(f"stacker file {path}: {key} must be >= 0, got {d[key]!r}")


def videos_fingerprint(video_ids) -> str:
    """sha256 of the sorted video ids: names a fit set without storing it."""
    text = "\n".join(sorted(map(str, video_ids)))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def input_status(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Per video, the worst status over the models' video tables (error > no_face > ok)."""
    rank = {STATUS_OK: 0, "no_face": 1, "error": 2}
    worst: dict[str, str] = {}
    for t in tables.values():
        if "status" not in t.columns:
            continue
        for vid, st in zip(t["video_id"].astype(str), t["status"].fillna(STATUS_OK).astype(str)):
            if rank.get(st, 2) > rank.get(worst.get(vid, STATUS_OK), 0):
                worst[vid] = st
    return pd.Series(worst, dtype=object)


def stacked_table(feats: pd.DataFrame, p: pd.Series, labels: pd.Series | None = None,
                  model: str = "stacker", aggregation: str = "stack",
                  status: pd.Series | None = None) -> pd.DataFrame:
    """A video score table (:mod:`dfd.scores` columns) from stacked or averaged scores.

    A video lacking a feature gets NaN ``p_fake``, the worst input ``status`` (``no_face``
    unless a model reported ``error``) and an ``error`` naming the models without a score.
    """
    rows = []
    for vid in feats.index:
        score = float(p.get(vid, np.nan))
        ok = bool(np.isfinite(score))
        lacking = sorted({c.split(":")[0] for c in feats.columns if pd.isna(feats.at[vid, c])})
        st = STATUS_OK if ok else str(status.get(vid, "no_face")) if status is not None else "no_face"
        if not ok and st == STATUS_OK:
            st = "error"
        rows.append({"video_id": vid,
                     "label": int(labels.get(vid, UNKNOWN)) if labels is not None else UNKNOWN,
                     "p_fake": score if ok else np.nan, "n_frames": 0, "n_faces": 0, "status": st,
                     "error": "" if ok else f"no score from model(s) {lacking}",
                     "model": model, "aggregation": aggregation})
    return pd.DataFrame(rows, columns=VIDEO_COLUMNS)
