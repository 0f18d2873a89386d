"""Platt scaling: make a model's P(fake) a calibrated probability, and fold it into the model.

A detector's sigmoid output ranks faces well or badly (ROC-AUC) whatever its scale, but log
loss (DFDC's metric) and the meaning of "P(fake) = 0.7" depend on the scale. Platt scaling fits

    P_cal = sigmoid(a · logit(p) + b)

by logistic regression of the labels on ``logit(p)`` over scores the model never trained on
(a validation split). ``a > 1`` spreads under-confident scores, ``b`` moves the 0.5 point.
It never changes the ranking, so ROC-AUC and average precision stay exactly the same.

Because the model ends in ``Dense(1, sigmoid)`` with ``p = sigmoid(w·h + c)``, the scaling
folds exactly into that layer: ``w' = a·w``, ``c' = a·c + b``. The calibrated model is the same
architecture of built-in layers (it loads without this package) and costs nothing at run time.

    scaling = fit_platt(val["p_fake"], val["label"])
    calibrated = fold_into_model(model, scaling)   # a copy; ``model`` is untouched
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import beta
from sklearn.linear_model import LogisticRegression

from dfd import presets
from dfd.export import DEFAULT_VERSION, ExportExistsError, export_savedmodel, version_dir
from dfd.inference.loading import load_keras, preset_of
from dfd.labels import FAKE, REAL, parse_label
from dfd.scores import STATUS_OK, read_table, video_scores

log = logging.getLogger(__name__)

#: scores are clipped to [EPS, 1 - EPS] before the logit (a sigmoid output of exactly 0 or 1)
EPS = 1e-7

#: ``dfd calibrate``'s confidence for the uncertain band: the precision of each side's verdicts,
#: over all its videos, must reach the target at this one-sided lower bound
BAND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class PlattScaling:
    """``P_cal = sigmoid(a · logit(p) + b)``, fitted on ``n`` scores (``n_fake`` of them FAKE)."""

    a: float
    b: float
    n: int = 0
    n_fake: int = 0
    fitted_on: str = ""

    def apply(self, p) -> np.ndarray:
        return expit(self.a * logit(p) + self.b)  # no overflow warning at extreme scores

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PlattScaling:
        try:
            return cls(**{k: d[k] for k in ("a", "b")},
                       **{k: d[k] for k in ("n", "n_fake", "fitted_on") if k in d})
        except KeyError:
            raise ValueError(f"a Platt scaling needs 'a' and 'b', got keys {sorted(d)}") from None


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(p_fake, labels, fitted_on: str = "") -> PlattScaling:
    """Fit Platt scaling of scores ``p_fake`` to 0/1 ``labels`` (FAKE = 1).

    Labels in any accepted spelling (FAKE/REAL, df/real, 1/0: :func:`dfd.labels.parse_label`).
    Rows with a NaN score or an unknown label are dropped. Both classes are needed; an
    ``a <= 0`` fit (scores that rank the classes backwards) is refused, since folding it would
    turn the detector around.
    """
    p = np.asarray(p_fake, np.float64).reshape(-1)
    y = np.array([parse_label(v) for v in np.asarray(labels, dtype=object).reshape(-1)])
    if p.shape != y.shape:
        raise ValueError(f"{p.size} scores but {y.size} labels")
    keep = np.isfinite(p) & np.isin(y, (REAL, FAKE))
    p, y = p[keep], y[keep].astype(int)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"scores must be within [0, 1], got min {p.min()} max {p.max()}")
    n_fake = int((y == FAKE).sum())
    if len(y) == 0 or n_fake in (0, len(y)):
        raise ValueError(f"calibration needs REAL and FAKE examples, got {len(y) - n_fake} REAL "
                         f"and {n_fake} FAKE (after dropping unscored / unlabelled rows)")
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p)[:, None], y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not a > 0:
        raise ValueError(f"the fitted slope is {a:.4g} <= 0: these scores do not rank FAKE above "
                         "REAL on this data, so there is nothing to calibrate")
    return PlattScaling(a=a, b=b, n=int(len(y)), n_fake=n_fake, fitted_on=fitted_on)


def output_layer(model):
    """The model's final ``Dense(1, sigmoid)`` layer, or ValueError saying what is there."""
    import keras

    layer = model.layers[-1]
    act = getattr(getattr(layer, "activation", None), "__name__", None)
    if not isinstance(layer, keras.layers.Dense) or layer.units != 1 or act != "sigmoid":
        raise ValueError(
            f"model {model.name!r} does not end in Dense(1, sigmoid) (its last layer is "
            f"{type(layer).__name__} {layer.name!r}, activation {act!r}); models with the "
            "authors' flip layer must be built with fold_flip=True first")
    return layer


def fold_into_model(model, scaling: PlattScaling):
    """A copy of ``model`` whose output is ``scaling.apply(model(x))``, with the same layers."""
    import keras

    output_layer(model)  # check before copying
    calibrated = keras.models.clone_model(model)
    calibrated.set_weights(model.get_weights())
    layer = output_layer(calibrated)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scaling.a, bias * scaling.a + scaling.b])
    return calibrated


def describe(scaling: PlattScaling) -> str:
    """One line for logs and model cards."""
    mid = -scaling.b / scaling.a  # the raw logit that maps to 0.5
    raw_half = 1.0 / (1.0 + math.exp(-mid))
    return (f"Platt scaling a={scaling.a:.3f}, b={scaling.b:+.3f} fitted on {scaling.n} scores "
            f"({scaling.n_fake} FAKE{', ' + scaling.fitted_on if scaling.fitted_on else ''}); "
            f"a raw score of {raw_half:.3f} becomes 0.5")


def load_for_calibration(spec, weights_dir=None):
    """The Keras model of ``spec`` ending in Dense(1, sigmoid): a preset whose file gives
    P(real) (the authors' weights) is built with the flip folded into that layer."""
    if presets.is_registered(str(spec)) and presets.get(str(spec)).outputs == "p_real":
        preset = presets.get(str(spec))
        builder = presets.get_builder(preset.architecture)
        return builder.fn(weights=preset.name, weights_dir=weights_dir, fold_flip=True,
                          name=preset.name)
    return load_keras(spec, weights_dir)


def choose_uncertain_band(y, p, threshold: float = 0.5, min_precision: float = 0.8,
                          min_support: int = 5, fitted_on: str = "", groups=None,
                          confidence: float | None = None, videos=None) -> dict:
    """The uncertain band around ``threshold`` outside of which verdicts can be trusted.

    ``y``/``p``: labels and P(fake) of videos from sources the model **never trained on**
    (cross-source validation scores): in-source scores would make the band look too narrow.
    ``high`` is the lowest score >= ``threshold`` such that the videos scored at or above it
    are FAKE with precision >= ``min_precision`` (over at least ``min_support`` videos);
    ``low`` the highest score <= ``threshold`` such that those below it are REAL with the same
    precision. Either is None when no such score exists: that verdict is then never given
    (see :func:`dfd.labels.verdict`). ``groups`` (one per video, e.g. its source): the
    precision must then hold **within every group** that has a video on that side, not only
    over the pooled videos (where a large source could carry a small one it fails on).
    ``confidence`` (e.g. 0.95): the precision over all the videos on a side must also reach
    ``min_precision`` at its one-sided lower confidence bound (Clopper-Pearson), so that a
    verdict is not given on the evidence of a handful of videos (6 REAL videos at 5 of 6 right
    is 0.83 by point estimate, 0.42 at a 95% bound); ``None``: the point estimate only.
    ``videos`` (one id per score): when the same video is scored several times (under each
    re-coding of :mod:`dfd.evaluation.robustness`), those scores are not independent
    evidence, so ``min_support`` and the confidence bound count each video once (a video is
    on a side when any of its scores is; a FAKE or REAL verdict on it is right or wrong by its
    one label). Without it every score is a video.
    Returns the band with its measured precisions (the worst group's, and
    ``group_precision`` per group) and the share of videos it leaves decided (``coverage``).
    """
    y = np.asarray(y, dtype=int).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    names, g = None, np.zeros(len(y), int)
    vid = np.arange(len(y)) if videos is None else np.unique(
        np.asarray(videos, dtype=str).reshape(-1), return_inverse=True)[1]
    if len(vid) != len(y):
        raise ValueError(f"videos must give one id per score: {len(vid)} for {len(y)} scores")
    if groups is not None:
        names, g = np.unique(np.asarray(groups, dtype=str).reshape(-1), return_inverse=True)
        if len(g) != len(y):
            raise ValueError(f"groups must give one group per video: {len(g)} for {len(y)} "
                             "videos")
    ok = np.isfinite(p) & np.isin(y, (REAL, FAKE))
    y, p, g, vid = y[ok], p[ok], g[ok], vid[ok]
    if not 0.5 <= min_precision <= 1.0:
        raise ValueError(f"min_precision must be within [0.5, 1], got {min_precision!r}")
    if len(y) == 0:
        raise ValueError("no labelled, scored videos to choose an uncertain band from")
    if confidence is not None and not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be within [0.5, 1), or None for the point estimate "
                         f"alone, got {confidence!r}")

    def worst(sel, target):  # the lowest per-group share of ``target`` among selected videos
        return min(float((y[sel & (g == k)] == target).mean()) for k in np.unique(g[sel]))

    def holds(sel, target):  # support and bound over distinct videos
        n = len(np.unique(vid[sel]))
        if n == 0 or n < min_support or worst(sel, target) < min_precision:
            return False
        hits = len(np.unique(vid[sel & (y == target)]))
        return confidence is None or lower_bound(hits, n, confidence) >= min_precision

    high = fake_prec = None
    for h in np.unique(p[p >= threshold]):  # ascending: the first that holds is the widest FAKE
        sel = p >= h
        if holds(sel, FAKE):
            high, fake_prec = float(h), worst(sel, FAKE)
            break
    low = real_prec = None
    # descending: widest REAL first (the threshold itself too: every video below it is REAL)
    for lo in np.unique(np.append(p[p <= threshold], float(threshold)))[::-1]:
        sel = p < lo
        if holds(sel, REAL):
            low, real_prec = float(lo), worst(sel, REAL)
            break
    decided = np.zeros(len(p), bool)
    if high is not None:
        decided |= p >= high
    if low is not None:
        decided |= p < low
    band = {"low": low, "high": high, "threshold": float(threshold),
            "min_precision": float(min_precision), "confidence": confidence,
            "fake_precision": fake_prec,
            "real_precision": real_prec, "coverage": float(decided.mean()), "n": int(len(y)),
            "n_fake": int((y == FAKE).sum()), "n_videos": int(len(np.unique(vid))), "fitted_on": fitted_on}
    if names is not None:  # per group: [verdicts given, their precision], None if none
        band["group_precision"] = verdict_precision(y, p, band, names[g])
    return band


def lower_bound(hits: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of a proportion ``hits / n`` at ``confidence``."""
    if hits > n:
        raise ValueError(f"hits must not exceed n: hits={hits!r}, n={n!r}")
    if n <= 0 or hits <= 0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, hits, n - hits + 1))


def verdict_precision(y, p, band: dict, groups) -> dict:
    """What ``band`` decides on labelled videos, per group: ``{group: {"n": videos, "real":
    [REAL verdicts, their precision], "fake": [FAKE verdicts, their precision]}}``, a side
    ``None`` when the band never gives that verdict or gave none in the group.

    The check of a band on videos it was not chosen on (a test split, a re-coding). Videos
    without a REAL/FAKE label (UNKNOWN, missing) or without a score are left out."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups, dtype=str).reshape(-1)
    if not len(y) == len(p) == len(groups):
        raise ValueError(f"verdict_precision needs one label, score and group per video: "
                         f"{len(y)}, {len(p)}, {len(groups)}")
    ok = np.isin(y, (REAL, FAKE)) & np.isfinite(p)
    y, p, groups = y[ok].astype(int), p[ok], groups[ok]
    low, high = band.get("low"), band.get("high")

    def given(chosen, target):
        return [int(chosen.sum()), float((y[chosen] == target).mean())] if chosen.any() else None

    out = {}
    for name in np.unique(groups):
        here = groups == name
        out[str(name)] = {"n": int(here.sum()),
                          "real": None if low is None else given((p < low) & here, REAL),
                          "fake": None if high is None else given((p >= high) & here, FAKE)}
    return out


def band_groups(table):
    """The groups a band's precision must hold within, one per row of a score table: its
    ``source`` and, when the table holds the same videos under several conditions (the
    re-codings of :mod:`dfd.evaluation.robustness`, column ``condition``), the condition, as
    ``"SOURCE@CONDITION"``. ``None`` when the table has a single group."""
    cols = [c for c in ("source", "condition") if c in table.columns]
    if not any(table[c].nunique(dropna=False) > 1 for c in cols):
        return None
    return table[cols].fillna("").astype(str).agg("@".join, axis=1)


def frame_calibrated_videos(videos, frames, scaling: PlattScaling):
    """``videos`` (a labelled video table) with each ``p_fake`` recomputed from ``frames``
    (its frame table: ``dfd predict --frames-out``) calibrated one frame at a time.

    That is the score the calibrated export gives a video: it carries the scaling in its
    output layer, so each frame is calibrated and the video aggregates the calibrated frames
    (by the table's ``aggregation``, default ``mean``; a video of several tracks takes the most
    suspicious one), which for a video of several frames is not the calibration of its raw
    score. Rows are matched on ``video_id`` (and ``condition`` where both tables have it);
    a scored video with no frame is an error, not a silent fallback."""
    missing = {"video_id", "track", "frame_index", "p_fake"} - set(frames.columns)
    if missing:
        raise ValueError(f"frame table lacks column(s) {sorted(missing)} (give the table of "
                         f"dfd predict --frames-out); has {list(frames.columns)}")
    has = {"video": "condition" in videos.columns, "frame": "condition" in frames.columns}
    if has["video"] != has["frame"]:
        one = "video" if has["video"] else "frame"
        values = sorted(map(str, (videos if has["video"] else frames)["condition"].unique()))
        raise ValueError(f"only the {one} table has a 'condition' column ({values}): the "
                         "frames of each condition must be matched to that condition's videos")
    keys = ["video_id"] + (["condition"] if has["video"] else [])
    if has["video"]:  # a missing condition is a condition of its own, never a dropped row
        videos = videos.assign(condition=videos["condition"].fillna(""))
        frames = frames.assign(condition=frames["condition"].fillna(""))
    twice = videos[videos.duplicated(keys, keep=False)]
    if len(twice):
        raise ValueError(f"the video table has {len(twice)} rows sharing {' + '.join(keys)}, "
                         f"e.g. {list(twice['video_id'][:3])}: each video's frames can be "
                         "matched to one row only")
    frames = frames.assign(p_fake=scaling.apply(frames["p_fake"].to_numpy(float)))
    hows = (videos["aggregation"].fillna("mean").replace("", "mean")
            if "aggregation" in videos.columns else pd.Series("mean", index=videos.index))
    parts = (frames.groupby("condition", sort=False, dropna=False) if len(keys) > 1
             else [(None, frames)])
    scored = [video_scores(sub, how=str(how))[["video_id", "p_fake"]].assign(
                  aggregation=how, **({"condition": cond} if len(keys) > 1 else {}))
              for cond, sub in parts for how in hows.unique()]
    scored = pd.concat(scored, ignore_index=True).rename(columns={"p_fake": "_frames"})
    out = videos.assign(aggregation=hows.to_numpy()).merge(scored, on=keys + ["aggregation"],
                                                           how="left")
    lost = out["_frames"].isna() & out["p_fake"].notna()
    if lost.any():
        raise ValueError(f"{int(lost.sum())} scored video(s) have no frame in the frame table, "
                         f"e.g. {list(out.loc[lost, 'video_id'][:3])}: give the frame table of "
                         "the same dfd predict run")
    out["p_fake"] = out.pop("_frames")
    if "aggregation" not in videos.columns:
        out = out.drop(columns="aggregation")
    return out


def calibrate_model(model_spec, scores, out_dir, weights_dir=None,
                    version: int = DEFAULT_VERSION, overwrite: bool = False,
                    uncertain_scores=None, min_precision: float = 0.8, threshold: float = 0.5,
                    confidence: float | None = BAND_CONFIDENCE, uncertain_frames=None):
    """``dfd calibrate``: fit Platt scaling on the labelled video table ``scores`` and export
    the model of ``model_spec`` with it folded in to ``out_dir/<version>`` (its preset keeps
    the source's framing and records the ``calibration``; with ``uncertain_scores``, a labelled
    table of sources the model never trained on, also the uncertain band of
    :func:`choose_uncertain_band`). Returns ``(folder, scaling)``.

    The band is chosen on the videos' calibrated scores: ``uncertain_frames``, the frame table
    of the same scoring (``dfd predict --frames-out``), makes them exact for videos of several
    frames (:func:`frame_calibrated_videos`: what the export will give them); without it each
    video's raw score is calibrated, exact for videos of one frame only."""
    if version_dir(out_dir, version).exists() and not overwrite:  # refuse before any work
        raise ExportExistsError(f"export {version_dir(out_dir, version)} exists already; pass "
                                f"--overwrite to replace it or --version N for a new version")
    table = read_table(scores)
    if "label" not in table.columns:
        raise ValueError(f"{scores} has no label column: give the video table of "
                         "`dfd predict --out` on labelled validation shards")
    if "status" in table.columns:
        table = table[table["status"].fillna(STATUS_OK) == STATUS_OK]
    scaling = fit_platt(table["p_fake"], table["label"], fitted_on=str(scores))
    extra = {"calibration": scaling.to_dict()}
    if uncertain_frames and not uncertain_scores:
        raise ValueError(f"uncertain_frames {uncertain_frames!r} needs uncertain_scores: the "
                         "video table of the same dfd predict run")
    if uncertain_scores:
        cross = read_table(uncertain_scores)
        if "label" not in cross.columns:
            raise ValueError(f"{uncertain_scores} has no label column")
        if "status" in cross.columns:
            cross = cross[cross["status"].fillna(STATUS_OK) == STATUS_OK]
        if uncertain_frames:
            cross = frame_calibrated_videos(cross, read_table(uncertain_frames), scaling)
            chosen_on = cross["p_fake"].to_numpy(float)
        else:
            chosen_on = scaling.apply(cross["p_fake"].to_numpy(float))
        extra["uncertain"] = choose_uncertain_band(
            [parse_label(v) for v in cross["label"]], chosen_on, threshold, min_precision,
            fitted_on=str(uncertain_scores) + (f", each video's frames calibrated one by one "
                                               f"({uncertain_frames})" if uncertain_frames
                                               else ""),
            groups=band_groups(cross), confidence=confidence,
            videos=cross["video_id"] if "video_id" in cross.columns else None)
        log.info("uncertain band %s", extra["uncertain"])
    model = load_for_calibration(model_spec, weights_dir)
    source = preset_of(model_spec)
    out = export_savedmodel(fold_into_model(model, scaling), out_dir, source=str(model_spec),
                            face_margin=source.face_margin if source is not None else None,
                            extra_info=extra, version=version, overwrite=overwrite, base=source)
    log.info("%s", describe(scaling))
    return out, scaling
