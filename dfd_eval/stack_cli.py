"""``dfd stack fit|predict``: the logistic-regression stacker from the command line.

    dfd stack fit --model meso4=val_meso4_frames.csv --model lstm=val_lstm.csv --out stacker.json
    dfd stack predict --stacker stacker.json --model meso4=test_meso4_frames.csv \\
                      --model lstm=test_lstm.csv --out stacked.csv

``--model NAME=PATH`` takes a video table (feature ``NAME``) or a frame table (features
``NAME:mean``, ``NAME:vote``, ``NAME:max``). Fit on videos the base models never trained on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dfd.scores import read_table, write_table
from dfd_eval.stacker import (
    Stacker,
    average_scores,
    build_features,
    input_status,
    oof_predict,
    stacked_table,
    video_labels,
)

log = logging.getLogger(__name__)


def model_spec(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path or ":" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (NAME without ':'), got {text!r}")
    return name, Path(path)


def read_models(specs: list[tuple[str, Path]], labels_path=None) -> tuple[dict, pd.Series]:
    """Read the named tables and the labels per video (tables' labels, then the labels file)."""
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"model names must be unique, got {names}")
    tables = {n: read_table(p) for n, p in specs}
    labels = video_labels(tables)
    if labels_path:
        from dfd.labels import parse_label

        extra = pd.read_csv(labels_path, dtype={"video_id": str})
        extra = pd.Series([parse_label(v) for v in extra["label"]], index=extra["video_id"])
        both = extra.index.intersection(labels.index)
        clash = [v for v in both if extra[v] != -1 and extra[v] != labels[v]]
        if clash:
            raise ValueError(f"labels file {labels_path} disagrees with the score tables for "
                             f"{len(clash)} video(s): {clash[:10]}")
        labels = extra[extra != -1].combine_first(labels).astype(int)
    return tables, labels


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="stack_command", metavar="{fit,predict}", required=True)
    f = sub.add_parser("fit", help="fit the stacker on a held-out split -> stacker.json")
    f.add_argument("--model", type=model_spec, action="append", required=True, metavar="NAME=PATH")
    f.add_argument("--labels", type=Path, help="CSV video_id,label (else the tables' labels)")
    f.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength (1.0)")
    f.add_argument("--oof", type=int, default=5, metavar="K",
                   help="report K-fold out-of-fold AUC on the fit set (0: skip; default 5)")
    f.add_argument("--oof-out", type=Path, help="write the out-of-fold scores as a video table")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True, help="stacker JSON to write")
    q = sub.add_parser("predict", help="apply a stacker.json -> a stacked video score table")
    q.add_argument("--stacker", type=Path, required=True)
    q.add_argument("--model", type=model_spec, action="append", required=True, metavar="NAME=PATH")
    q.add_argument("--labels", type=Path, help="CSV video_id,label copied into the output")
    q.add_argument("--out", type=Path, required=True, help="stacked video table (.csv/.parquet)")


def _auc(y, p) -> float | None:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(p)
    y, p = np.asarray(y)[ok], np.asarray(p)[ok]
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def fit(args) -> int:
    tables, labels = read_models(args.model, args.labels)
    feats = build_features(tables)
    st = Stacker.fit(feats, labels, C=args.C, seed=args.seed)
    y = labels.reindex(feats.index)
    lab = y.isin([0, 1]).to_numpy()
    report = {"input_auc": {c: _auc(y[lab], feats.loc[lab, c].to_numpy(float)) for c in feats.columns}}
    report["input_auc"]["average"] = _auc(y[lab], average_scores(feats)[lab].to_numpy(float))
    if args.oof:
        oof = oof_predict(feats, labels, args.oof, args.C, args.seed)
        report["oof_auc"] = _auc(labels.reindex(oof.index).to_numpy(int), oof.to_numpy())
        report["oof_folds"] = args.oof
        if args.oof_out:
            write_table(stacked_table(feats.loc[oof.index], oof, labels, aggregation="stack-oof"),
                        args.oof_out)
    st.fit_report = report
    st.save(args.out)
    print(f"stacker fitted on {st.n_train} videos ({st.n_train_fake} fake) -> {args.out}")
    for name, c in zip(st.feature_names, st.coef):
        print(f"  {name:<24} coef {c:+.4f}   AUC alone {report['input_auc'][name] or float('nan'):.4f}")
    print(f"  {'average':<24} {'':>11}   AUC {report['input_auc']['average'] or float('nan'):.4f}")
    if "oof_auc" in report:
        print(f"  stacker out-of-fold AUC ({args.oof} folds): {report['oof_auc'] or float('nan'):.4f}")
    return 0


def predict(args) -> int:
    st = Stacker.load(args.stacker)
    tables, labels = read_models(args.model, args.labels)
    lacking = sorted(set(st.models) - set(tables))
    if lacking:
        raise SystemExit(f"stacker {args.stacker} needs model(s) {lacking}; give --model NAME=PATH for each")
    feats = build_features({n: tables[n] for n in st.models})
    p = st.predict_features(feats)
    out = stacked_table(feats, p, labels, status=input_status(tables))
    write_table(out, args.out)
    print(f"stacked {int(out['status'].eq('ok').sum())}/{len(out)} videos -> {args.out}")
    return 0


def run(args) -> int:
    return fit(args) if args.stack_command == "fit" else predict(args)
