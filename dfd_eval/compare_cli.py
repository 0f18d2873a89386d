"""``dfd compare``: every model, the stacker and the plain average on one test split.

    dfd compare --model meso4=test_meso4.csv --model lstm=test_lstm.csv \\
                [--val meso4=val_meso4.csv --val lstm=val_lstm.csv --threshold-policy f1] \\
                [--stacker stacker.json] --out runs/compare

Prints the study's comparison table (accuracy, precision, recall, F1, ROC-AUC, log loss, n)
and writes it as ``comparison.csv`` / ``comparison.md`` next to a full report (ROC and PR
curves of all entries on one figure, metrics.json, index.html).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dfd.scores import video_scores
from dfd_eval import report
from dfd_eval.cli import add_common_arguments
from dfd_eval.metrics import apply_labels, evaluate, prepare
from dfd_eval.stack_cli import model_spec, read_models
from dfd_eval.stacker import (
    Stacker,
    average_scores,
    build_features,
    input_status,
    is_frame_table,
    oof_predict,
    stacked_table,
)

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["model", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc",
                 "roc_auc_95ci", "log_loss", "n"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=model_spec, action="append", required=True, metavar="NAME=PATH",
                   help="a model's test scores (video or frame table); repeat per model")
    p.add_argument("--val", type=model_spec, action="append", default=[], metavar="NAME=PATH",
                   help="the same model's validation scores (threshold policy); repeat per model")
    p.add_argument("--stacker", type=Path, help="stacker.json to apply to the test scores")
    p.add_argument("--no-average", action="store_true", help="leave out the plain-average baseline")
    add_common_arguments(p)


def _video_table(name: str, t: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    if is_frame_table(t):
        t = video_scores(t, "mean", labels.to_dict(), model=name)
    return apply_labels(t, labels.to_dict())


def _derived(tables: dict, labels: pd.Series, stacker: Stacker | None, average: bool) -> dict:
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
                raise SystemExit(f"stacker needs model(s) {lacking}; give --model NAME=PATH for each")
            sub = feats[[c for c in feats.columns if c.split(":")[0] in stacker.models]]
            out["stacker"] = stacked_table(sub, stacker.predict_features(sub), labels, status=status)
    return out


def _stacker_val_scores(vtables: dict, vlabels: pd.Series, stacker: Stacker,
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


def run(args) -> int:
    tables, labels = read_models(args.model, args.labels)
    val_specs = dict(args.val)
    unknown = sorted(set(val_specs) - set(tables))
    if unknown:
        raise SystemExit(f"--val names {unknown} match no --model; models are {sorted(tables)}")
    stacker = Stacker.load(args.stacker) if args.stacker else None
    tests = {n: _video_table(n, t, labels) for n, t in tables.items()}
    tests.update(_derived(tables, labels, stacker, not args.no_average))
    vals: dict[str, pd.DataFrame] = {}
    if val_specs:
        vtables, vlabels = read_models(list(val_specs.items()), args.labels)
        vals = {n: _video_table(n, t, vlabels) for n, t in vtables.items()}
        if set(val_specs) == set(tables):
            vals.update(_derived(vtables, vlabels, stacker, not args.no_average))
            if stacker is not None and args.threshold_policy != "fixed":
                vals["stacker"] = _stacker_val_scores(vtables, vlabels, stacker, vals["stacker"])
    results, curves = {}, {}
    for name, t in tests.items():
        if args.threshold_policy != "fixed" and name not in vals:
            raise SystemExit(f"threshold policy {args.threshold_policy!r} needs validation scores "
                             f"for {name!r}: give --val for every model")
        results[name] = evaluate(t, None, vals.get(name), args.threshold_policy, args.threshold,
                                 args.missing, args.bootstrap, args.seed, args.log_loss_clip)
        if name in vals and vals[name].attrs.get("threshold_scores") == "out-of-fold":
            results[name]["threshold"]["chosen_on"] = "out-of-fold validation scores"
        used, _ = prepare(t, args.missing)
        curves[name] = (used["label"].to_numpy(int), used["p_fake"].to_numpy(float))
    table = comparison_table(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    md = to_markdown(table)
    (out / "comparison.md").write_text(md)
    main = "stacker" if "stacker" in results else max(
        results, key=lambda n: results[n]["video"].get("roc_auc") or -1)
    figs = report.render_figures(out, curves, main, results[main])
    scores = pd.concat([t.assign(model=n) for n, t in tests.items()], ignore_index=True)
    metrics = {"models": results, "threshold_policy": args.threshold_policy, "featured": main,
               "stacker": str(args.stacker or "")}
    report.write_report(out, metrics, scores, figs, {"Comparison (video level)": table},
                        title="Model comparison")
    print(md, end="")
    print(f"report: {out / report.HTML_FILE}")
    return 0
