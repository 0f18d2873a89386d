"""Comparing models on one test split: score tables in, the study's comparison table out.

:func:`compare` is what ``dfd compare`` runs: every model's video table, the plain average
and a fitted stacker, each judged by :func:`dfd.evaluation.metrics.evaluate`, written as
``comparison.csv`` / ``comparison.md`` beside a full report. :func:`read_models` reads named
score tables and their labels (also for ``dfd stack``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dfd.evaluation import report
from dfd.evaluation.metrics import DEFAULT_CLIP, apply_labels, evaluate, prepare
from dfd.evaluation.stacker import (
    Stacker,
    average_scores,
    build_features,
    input_status,
    is_frame_table,
    oof_predict,
    stacked_table,
    video_labels,
)
from dfd.labels import parse_label
from dfd.scores import read_table, video_scores

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["model", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc",
                 "roc_auc_95ci", "log_loss", "n"]


def read_labels(path) -> pd.DataFrame | None:
    """A labels CSV (``video_id,label``; DFDC's ``metadata``-style FAKE/REAL accepted)."""
    if path is None:
        return None
    df = pd.read_csv(path, dtype={"video_id": str})
    if not {"video_id", "label"} <= set(df.columns):
        raise ValueError(f"labels file {path} needs columns video_id,label; has {list(df.columns)}")
    return df


def read_models(specs: list[tuple[str, Path]], labels_path=None) -> tuple[dict, pd.Series]:
    """Read the named tables and the labels per video (tables' labels, then the labels file)."""
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    tables = {n: read_table(p) for n, p in specs}
    labels = video_labels(tables)
    if labels_path:
        extra = pd.read_csv(labels_path, dtype={"video_id": str})
        extra = pd.Series([parse_label(v) for v in extra["label"]], index=extra["video_id"])
        both = extra.index.intersection(labels.index)
        clash = [v for v in both if extra[v] != -1 and extra[v] != labels[v]]
        if clash:
            raise ValueError(f"labels file {labels_path} disagrees with the score tables for "
                             f"{len(clash)} video(s): {clash[:10]}")
        labels = extra[extra != -1].combine_first(labels).astype(int)
    return tables, labels


def video_table(name: str, t: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    if is_frame_table(t):
        t = video_scores(t, "mean", labels.to_dict(), model=name)
    return apply_labels(t, labels.to_dict())


def derived_tables(tables: dict, labels: pd.Series, stacker: Stacker | None, average: bool) -> dict:
    """The stacker's and the average's video tables from the models' tables (one split)."""
    out = {}
    if len(tables) > 1 or stacker is not None:
        feats = build_features(tables)  # raises naming the model when the video sets differ
        status = input_status(tables)
        if average and len(tables) > 1:
            out["average"] = stacked_table(feats, average_scores(feats), labels, "average",
                                           "average", status)
        if stacker is not None:
            lacking = sorted(set(stacker.models) - set(tables))
            if lacking:
                raise ValueError(f"stacker needs model(s) {lacking}; give --scores NAME=PATH for each")
            sub = feats[[c for c in feats.columns if c.split(":")[0] in stacker.models]]
            out["stacker"] = stacked_table(sub, stacker.predict_features(sub), labels, status=status)
    return out


def stacker_val_scores(vtables: dict, vlabels: pd.Series, stacker: Stacker,
                        direct: pd.DataFrame) -> pd.DataFrame:
    """The stacker's validation scores for choosing its threshold, honestly.

    A stacker fitted on these very validation videos scores them in-sample (too well); then,
    and when the stacker records no fit set, the threshold is chosen on out-of-fold scores of
    the same stacker (same features and C) refitted K-fold on them.
    """
    feats = build_features(vtables)
    sub = feats[stacker.feature_names]
    same = stacker.fitted_on(sub, vlabels)
    if same is False:
        return direct
    log.info("stacker threshold chosen on 5-fold out-of-fold scores of the validation videos "
             "(%s)", "it was fitted on them" if same else "its fit set is not recorded")
    oof = oof_predict(sub, vlabels, C=stacker.C)
    table = stacked_table(sub.loc[oof.index], oof, vlabels, status=input_status(vtables))
    table.attrs["threshold_scores"] = "out-of-fold"
    return table


def comparison_table(results: dict) -> pd.DataFrame:
    rows = []
    for name, r in results.items():
        v, ci = r["video"], r["video"].get("ci", {}).get("roc_auc", {})
        rows.append({"model": name, "threshold": r["threshold"]["value"],
                     **{k: v.get(k) for k in TABLE_COLUMNS[2:8] if k != "roc_auc_95ci"},
                     "roc_auc_95ci": (f"[{ci['low']:.3f}, {ci['high']:.3f}]"
                                      if ci.get("low") is not None else ""),
                     "log_loss": v.get("log_loss"), "n": v.get("n")})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "n/a"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def compare(models, vals, out, labels_path=None, stacker_path=None, average: bool = True,
            threshold_policy: str = "fixed", threshold: float = 0.5, missing: str = "exclude",
            bootstrap: int = 1000, seed: int = 0, log_loss_clip: float = DEFAULT_CLIP) -> dict:
    """Every model (``[(name, path)]`` of test score tables), the plain average and a stacker
    on one test split; writes ``comparison.csv`` / ``comparison.md`` and a report to ``out``.

    ``vals``: ``[(name, path)]`` validation tables for threshold policies other than fixed.
    Returns ``{"table", "markdown", "report", "results"}``.
    """
    tables, labels = read_models(models, labels_path)
    val_specs = dict(vals)
    unknown = sorted(set(val_specs) - set(tables))
    if unknown:
        raise ValueError(f"validation tables {unknown} match no model; models are {sorted(tables)}")
    stacker = Stacker.load(stacker_path) if stacker_path else None
    tests = {n: video_table(n, t, labels) for n, t in tables.items()}
    tests.update(derived_tables(tables, labels, stacker, average))
    vals: dict[str, pd.DataFrame] = {}
    if val_specs:
        vtables, vlabels = read_models(list(val_specs.items()), labels_path)
        vals = {n: video_table(n, t, vlabels) for n, t in vtables.items()}
        if set(val_specs) == set(tables):
            vals.update(derived_tables(vtables, vlabels, stacker, average))
            if stacker is not None and threshold_policy != "fixed":
                vals["stacker"] = stacker_val_scores(vtables, vlabels, stacker, vals["stacker"])
    results, curves = {}, {}
    for name, t in tests.items():
        if threshold_policy != "fixed" and name not in vals:
            raise ValueError(f"threshold policy {threshold_policy!r} needs validation scores "
                             f"for {name!r}: give --val for every model")
        results[name] = evaluate(t, None, vals.get(name), threshold_policy, threshold,
                                 missing, bootstrap, seed, log_loss_clip)
        if name in vals and vals[name].attrs.get("threshold_scores") == "out-of-fold":
            results[name]["threshold"]["chosen_on"] = "out-of-fold validation scores"
        used, _ = prepare(t, missing)
        curves[name] = (used["label"].to_numpy(int), used["p_fake"].to_numpy(float))
    table = comparison_table(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    md = to_markdown(table)
    (out / "comparison.md").write_text(md)
    main = "stacker" if "stacker" in results else max(
        results, key=lambda n: results[n]["video"].get("roc_auc") or -1)
    figs = report.render_figures(out, curves, main, results[main])
    scores = pd.concat([t.assign(model=n) for n, t in tests.items()], ignore_index=True)
    metrics = {"models": results, "threshold_policy": threshold_policy, "featured": main,
               "stacker": str(stacker_path or "")}
    report.write_report(out, metrics, scores, figs, {"Comparison (video level)": table},
                        title="Model comparison")
    return {"table": table, "markdown": md, "report": out / report.HTML_FILE, "results": results}


def _auc(y, p) -> float | None:
    ok = np.isfinite(p)
    y, p = np.asarray(y)[ok], np.asarray(p)[ok]
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def fit_stacker(models, labels_path=None, C: float = 1.0, seed: int = 0, oof: int = 5,
                out=None) -> tuple[Stacker, pd.DataFrame | None]:
    """Fit the stacker on the named tables (``[(name, path)]``, held-out videos), with a fit
    report (each input's AUC alone, the average's, K-fold out-of-fold AUC when ``oof``) in
    ``stacker.fit_report``; saved to ``out`` when given. Returns the stacker and the
    out-of-fold video table (None without ``oof``)."""
    tables, labels = read_models(models, labels_path)
    feats = build_features(tables)
    st = Stacker.fit(feats, labels, C=C, seed=seed)
    y = labels.reindex(feats.index)
    lab = y.isin([0, 1]).to_numpy()
    report = {"input_auc": {c: _auc(y[lab], feats.loc[lab, c].to_numpy(float)) for c in feats.columns}}
    report["input_auc"]["average"] = _auc(y[lab], average_scores(feats)[lab].to_numpy(float))
    oof_table = None
    if oof:
        scores = oof_predict(feats, labels, oof, C, seed)
        report["oof_auc"] = _auc(labels.reindex(scores.index).to_numpy(int), scores.to_numpy())
        report["oof_folds"] = oof
        oof_table = stacked_table(feats.loc[scores.index], scores, labels, aggregation="stack-oof")
    st.fit_report = report
    if out is not None:
        st.save(out)
    return st, oof_table
