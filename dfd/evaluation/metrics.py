"""Classification metrics for P(fake) scores: scikit-learn does the arithmetic, this module the bookkeeping.

* :func:`prepare` turns a video table into labels and scores under an explicit policy for
  videos without a score (``status`` ``no_face``/``error`` or NaN ``p_fake``) and counts them.
* :func:`threshold_metrics`: accuracy, balanced accuracy, precision / recall / F1 per class
  and for FAKE as the positive class, and the confusion matrix, predicting FAKE when
  ``p_fake >= threshold``.
* :func:`score_metrics`: threshold-free ROC-AUC and average precision computed on the
  *scores* (not on 0/1 predictions), log loss and the equal error rate.
* :func:`choose_threshold`: ``fixed`` / ``f1`` (max F1) / ``youden`` (max TPR - FPR), chosen on
  validation scores and then applied unchanged to test.
* :func:`bootstrap_ci`: 95% percentile intervals resampling **videos**; for frame-level
  metrics a resampled video brings all of its frames.

A metric that is undefined on the data (AUC with one class only, precision with no
predicted fakes, ...) is ``None`` with the reason in ``result["undefined"][name]``, never a crash.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from dfd import progress
from dfd.config import json_safe
from dfd.evaluation.policies import DEFAULT_CLIP, MISSING_POLICIES, THRESHOLD_POLICIES
from dfd.labels import FAKE, REAL, UNKNOWN, label_name, parse_label
from dfd.scores import STATUS_OK

log = logging.getLogger(__name__)

SCORE_METRICS = ("roc_auc", "average_precision", "log_loss", "eer")
THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1")


def apply_labels(table: pd.DataFrame, labels: pd.DataFrame | dict | None) -> pd.DataFrame:
    """Fill a video table's ``label`` from a labels table (``video_id, label``) or dict.

    Labels in any accepted spelling (FAKE/REAL, df/real, 1/0/-1). A video whose table label
    is known and differs from the labels file raises ``ValueError`` naming the videos.
    """
    out = table.copy()
    if "label" not in out.columns:
        out["label"] = UNKNOWN
    out["label"] = [parse_label(v) for v in out["label"]]
    if labels is None:
        return out
    if isinstance(labels, pd.DataFrame):
        if not {"video_id", "label"} <= set(labels.columns):
            raise ValueError(f"labels table needs columns video_id, label; has {list(labels.columns)}")
        labels = dict(zip(labels["video_id"].astype(str), labels["label"]))
    given = {str(k): parse_label(v) for k, v in labels.items()}
    new = np.array([given.get(str(v), UNKNOWN) for v in out["video_id"]])
    old = out["label"].to_numpy()
    clash = (old != UNKNOWN) & (new != UNKNOWN) & (old != new)
    if clash.any():
        ids = out.loc[clash, "video_id"].astype(str).tolist()
        raise ValueError(f"labels file disagrees with the score table for {len(ids)} video(s): {ids[:10]}")
    out["label"] = np.where(new != UNKNOWN, new, old)
    return out


def prepare(table: pd.DataFrame, missing: str = "exclude") -> tuple[pd.DataFrame, dict]:
    """Rows usable for metrics and an account of the rest.

    Videos with an unknown label are always left out. Videos without a score
    (``status`` not ``ok`` or NaN ``p_fake``) follow ``missing``: ``exclude`` (default) drops
    them; ``as_real`` / ``as_fake`` / ``as_half`` score them 0 / 1 / 0.5, only when chosen.
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing-score policy {missing!r}; choose from {sorted(MISSING_POLICIES)}")
    for col in ("video_id", "p_fake", "label"):
        if col not in table.columns:
            raise ValueError(f"video table lacks column {col!r}; has {list(table.columns)}")
    t = table.copy()
    t["label"] = [parse_label(v) for v in t["label"]]
    t["p_fake"] = pd.to_numeric(t["p_fake"], errors="coerce").astype(float)
    status = t["status"].fillna(STATUS_OK).astype(str) if "status" in t else pd.Series(STATUS_OK, t.index)
    bad_range = t["p_fake"].notna() & ((t["p_fake"] < 0) | (t["p_fake"] > 1))
    if bad_range.any():
        ids = t.loc[bad_range, "video_id"].astype(str).tolist()
        raise ValueError(f"p_fake outside [0, 1] for {len(ids)} video(s): {ids[:10]}")
    unscored = (status != STATUS_OK) | t["p_fake"].isna()
    unknown = t["label"] == UNKNOWN
    account = {
        "n_rows": int(len(t)),
        "n_unknown_label": int(unknown.sum()),
        "n_no_face": int(((status == "no_face") & ~unknown).sum()),
        "n_error": int(((status == "error") & ~unknown).sum()),
        "n_nan_score": int((t["p_fake"].isna() & (status == STATUS_OK) & ~unknown).sum()),
        "missing_policy": missing,
    }
    keep = ~unknown
    fill = MISSING_POLICIES[missing]
    if fill is None:
        keep &= ~unscored
    else:
        t.loc[unscored, "p_fake"] = fill
    out = t.loc[keep].reset_index(drop=True)
    account["n_used"] = int(len(out))
    account["n_unscored_excluded"] = int((unscored & ~unknown).sum()) if fill is None else 0
    if account["n_unscored_excluded"]:
        log.info("%d labelled video(s) without a score excluded (missing policy 'exclude')",
                    account["n_unscored_excluded"])
    return out, account


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {p.shape}")
    if np.isnan(p).any():
        raise ValueError(f"{int(np.isnan(p).sum())} NaN score(s): apply prepare() with a missing policy first")
    if not np.isin(y, (REAL, FAKE)).all():
        raise ValueError(f"labels must be 0/1 here, got values {sorted(set(y.tolist()))}")
    return y, p


def threshold_metrics(y, p, threshold: float = 0.5) -> dict:
    """Metrics of the 0/1 decision ``p >= threshold`` (FAKE is the positive class)."""
    y, p = _check(y, p)
    res: dict = {"threshold": float(threshold), "n": int(len(y)), "undefined": {}}
    if len(y) == 0:
        res["undefined"]["all"] = "empty set: no labelled, scored videos"
        for k in THRESHOLD_METRICS:
            res[k] = None
        return res
    pred = (p >= threshold).astype(int)
    cm = skm.confusion_matrix(y, pred, labels=[REAL, FAKE])
    res["confusion_matrix"] = cm.tolist()  # rows true REAL, FAKE; columns predicted REAL, FAKE
    res["accuracy"] = float(skm.accuracy_score(y, pred))
    if len(np.unique(y)) < 2:
        res["balanced_accuracy"] = None
        res["undefined"]["balanced_accuracy"] = f"only one class present (label {int(y[0])})"
    else:
        res["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, pred))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(
        y, pred, labels=[REAL, FAKE], zero_division=np.nan)
    res["per_class"] = {
        name: {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": int(sup[i])}
        for i, name in enumerate(map(label_name, (REAL, FAKE)))
    }
    res["precision"], res["recall"], res["f1"] = prec[1], rec[1], f1[1]
    if np.isnan(prec[1]):
        res["undefined"]["precision"] = "no video predicted FAKE at this threshold"
    if np.isnan(rec[1]):
        res["undefined"]["recall"] = "no FAKE video in the set"
    if np.isnan(f1[1]):
        res["undefined"]["f1"] = "precision or recall undefined"
    return json_safe(res)


def equal_error_rate(y, p) -> tuple[float, float]:
    """(EER, threshold) where the false positive and false negative rates cross, interpolated."""
    fpr, tpr, thr = skm.roc_curve(y, p)
    fnr = 1.0 - tpr
    d = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(d <= 0))
    if i == 0 or d[i] == 0:
        return float((fpr[i] + fnr[i]) / 2), float(thr[i])
    w = d[i - 1] / (d[i - 1] - d[i])
    eer = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t0 = thr[i - 1] if np.isfinite(thr[i - 1]) else 1.0
    return float(eer), float(t0 + w * (thr[i] - t0))


def score_metrics(y, p, clip: float = DEFAULT_CLIP) -> dict:
    """ROC-AUC, average precision, log loss (scores clipped to [clip, 1 - clip]) and EER."""
    y, p = _check(y, p)
    res: dict = {"n": int(len(y)), "log_loss_clip": clip, "undefined": {}}
    if len(y) == 0:
        for k in SCORE_METRICS:
            res[k] = None
            res["undefined"][k] = "empty set: no labelled, scored videos"
        return res
    pc = np.clip(p, clip, 1.0 - clip)
    res["log_loss"] = float(skm.log_loss(y, pc, labels=[REAL, FAKE]))
    if len(np.unique(y)) < 2:
        why = f"only one class present (label {int(y[0])}): needs both REAL and FAKE videos"
        for k in ("roc_auc", "average_precision", "eer"):
            res[k] = None
            res["undefined"][k] = why
        return res
    res["roc_auc"] = float(skm.roc_auc_score(y, p))
    res["average_precision"] = float(skm.average_precision_score(y, p))
    res["eer"], res["eer_threshold"] = equal_error_rate(y, p)
    return json_safe(res)


def choose_threshold(y, p, policy: str = "fixed", value: float = 0.5) -> dict:
    """The decision threshold by policy, from validation labels and scores.

    ``fixed`` returns ``value``; ``f1`` the score threshold of maximal F1 (FAKE positive);
    ``youden`` the one of maximal TPR - FPR. Ties go to the first (highest) threshold.
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; choose from {THRESHOLD_POLICIES}")
    if policy == "fixed":
        return {"policy": "fixed", "value": float(value), "chosen_on": None}
    y, p = _check(y, p)
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise ValueError(f"threshold policy {policy!r} needs validation scores with both classes; "
                         f"got {len(y)} video(s), classes {sorted(set(y.tolist()))}")
    if policy == "f1":
        prec, rec, thr = skm.precision_recall_curve(y, p)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)[:-1]
        i = int(np.argmax(f1[::-1]))  # thresholds ascend; prefer the highest among ties
        i = len(f1) - 1 - i
        best, t = float(f1[i]), float(thr[i])
    else:
        fpr, tpr, thr = skm.roc_curve(y, p)
        j = (tpr - fpr)[1:]
        i = int(np.argmax(j)) + 1
        best, t = float(j[i - 1]), float(thr[i])
    return {"policy": policy, "value": t, "chosen_on": "validation", "n_val": int(len(y)),
            "val_objective": best}


def all_metrics(y, p, threshold: float = 0.5, clip: float = DEFAULT_CLIP) -> dict:
    """Threshold metrics and score metrics in one flat dict (``undefined`` merged)."""
    a, b = threshold_metrics(y, p, threshold), score_metrics(y, p, clip)
    return {**a, **b, "undefined": {**a["undefined"], **b["undefined"]}}


def bootstrap_ci(y, p, groups=None, threshold: float = 0.5, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, clip: float = DEFAULT_CLIP,
                 names=THRESHOLD_METRICS + SCORE_METRICS) -> dict:
    """Percentile confidence intervals of :func:`all_metrics`, resampling groups (videos).

    ``groups`` holds the video id of each item; ``None`` means every item is its own video.
    Replicates where a metric is undefined (e.g. one class drawn) are skipped and counted.
    Returns ``{metric: {"low", "high", "n_valid"}}`` plus ``n_boot``, ``level`` and ``seed``.
    """
    y, p = _check(y, p)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in names}
    n_draws = n_boot if len(uniq) else 0
    with progress.bar(n_draws, "bootstrap", "draw", leave=False) as bar:
        for _ in range(n_draws):
            pick = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([members[g] for g in pick])
            m = all_metrics(y[idx], p[idx], threshold, clip)
            for k in names:
                if m.get(k) is not None:
                    draws[k].append(m[k])
            bar.update(1)
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out: dict = {"n_boot": n_boot, "level": level, "seed": seed, "resampled": "videos",
                 "n_groups": int(len(uniq))}
    for k, v in draws.items():
        out[k] = ({"low": float(np.percentile(v, lo_q)), "high": float(np.percentile(v, hi_q)),
                   "n_valid": len(v)} if v else {"low": None, "high": None, "n_valid": 0})
    return out


def frame_level(frames: pd.DataFrame, videos: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, video ids) per scored face, each face taking its video's label.

    Only videos present in ``videos`` (already prepared: known labels) are used.
    """
    if not {"video_id", "p_fake"} <= set(frames.columns):
        raise ValueError(f"frame table lacks video_id/p_fake; has {list(frames.columns)}")
    lab = dict(zip(videos["video_id"].astype(str), videos["label"].astype(int)))
    f = frames[frames["video_id"].astype(str).isin(lab) & frames["p_fake"].notna()]
    vids = f["video_id"].astype(str).to_numpy()
    return np.array([lab[v] for v in vids], dtype=int), f["p_fake"].to_numpy(float), vids


def evaluate(videos: pd.DataFrame, frames: pd.DataFrame | None = None,
             val: pd.DataFrame | None = None, policy: str = "fixed", threshold: float = 0.5,
             missing: str = "exclude", n_boot: int = 1000, seed: int = 0,
             clip: float = DEFAULT_CLIP) -> dict:
    """Video-level (and, with ``frames``, frame-level) metrics with bootstrap intervals.

    The threshold comes from ``val`` under ``policy`` (``fixed`` needs no ``val``) and is
    applied unchanged here; the result records policy and value.
    """
    if policy != "fixed" and val is None:
        raise ValueError(f"threshold policy {policy!r} is chosen on validation scores: pass val (--val)")
    if val is not None and policy != "fixed":
        v, _ = prepare(val, missing)
        thr = choose_threshold(v["label"], v["p_fake"], policy)
    else:
        thr = choose_threshold([], [], "fixed", threshold)
    t = thr["value"]
    data, account = prepare(videos, missing)
    y, p = data["label"].to_numpy(int), data["p_fake"].to_numpy(float)
    if account["n_unscored_excluded"]:
        log.warning("%d labelled video(s) without a score (no_face/error) excluded; choose --missing "
                    "as_real/as_fake/as_half to score them instead", account["n_unscored_excluded"])
    result = {"threshold": thr, "counts": account, "video": all_metrics(y, p, t, clip)}
    if n_boot:
        result["video"]["ci"] = bootstrap_ci(y, p, data["video_id"].astype(str), t, n_boot,
                                             seed=seed, clip=clip)
    if frames is not None:
        fy, fp, fv = frame_level(frames, data)
        result["frame"] = all_metrics(fy, fp, t, clip)
        result["frame"]["n_videos"] = int(len(np.unique(fv)))
        if n_boot:
            result["frame"]["ci"] = bootstrap_ci(fy, fp, fv, t, n_boot, seed=seed, clip=clip)
    return json_safe(result)
