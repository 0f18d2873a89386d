"""Fitting the stacker of :mod:`dfd.evaluation.stacker` with scikit-learn (``StandardScaler`` +
``LogisticRegression``): the fit, and out-of-fold scores for honest reporting on the fit set.
The fitted :class:`~dfd.evaluation.stacker.Stacker` keeps plain numbers and predicts with
numpy alone, so that what only applies a stacker never loads scikit-learn."""

from __future__ import annotations

import datetime as _dt
from importlib.metadata import version

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dfd.evaluation.stacker import Stacker, usable_rows, videos_fingerprint
from dfd.labels import FAKE


def _versions() -> dict:
    try:
        pkg = version("dfd-tf")
    except Exception:  # noqa: BLE001 - not installed (source checkout)
        pkg = "unknown"
    return {"sklearn": sklearn.__version__, "numpy": np.__version__, "dfd-tf": pkg}


def make_pipeline(C: float = 1.0, seed: int = 0) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("lr", LogisticRegression(C=C, max_iter=1000, random_state=seed))])


def fit(feats: pd.DataFrame, y, C: float = 1.0, seed: int = 0) -> Stacker:
    """A stacker fitted on a feature frame (:func:`~dfd.evaluation.stacker.build_features`)
    and labels (a Series by video, or an array); videos without every feature (a warning counts
    them) or without a REAL/FAKE label are left out."""
    X, yy, idx = usable_rows(feats, y)
    pipe = make_pipeline(C, seed).fit(X, yy)
    sc, lr = pipe.named_steps["scale"], pipe.named_steps["lr"]
    return Stacker(feature_names=list(map(str, feats.columns)), coef=lr.coef_[0].tolist(),
                   intercept=float(lr.intercept_[0]), scaler_mean=sc.mean_.tolist(),
                   scaler_scale=sc.scale_.tolist(), n_train=int(len(yy)),
                   n_train_fake=int((yy == FAKE).sum()), C=float(C), versions=_versions(),
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   fit_videos=videos_fingerprint(idx))


def oof_predict(feats: pd.DataFrame, y, n_splits: int = 5, C: float = 1.0,
                seed: int = 0) -> pd.Series:
    """Out-of-fold stacker scores (stratified K-fold) for honest reporting on the fit set;
    ``n_splits`` folds, or as many as the smaller class has videos (``.attrs["folds"]``)."""
    X, yy, idx = usable_rows(feats, y)
    k = min(n_splits, int(np.bincount(yy, minlength=2).min()))
    if k < 2:
        raise ValueError(f"out-of-fold scores need >= 2 videos of each class; got {np.bincount(yy).tolist()}")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    p = cross_val_predict(make_pipeline(C, seed), X, yy, cv=cv, method="predict_proba")[:, 1]
    out = pd.Series(p, index=idx, name="p_fake")
    out.attrs["folds"] = k
    return out
