"""``dfd stack fit|predict``: the logistic-regression stacker from the command line.

    dfd stack fit --scores meso4=val_meso4_frames.csv --scores lstm=val_lstm.csv -o stacker.json
    dfd stack predict --stacker stacker.json --scores meso4=test_meso4_frames.csv \\
                      --scores lstm=test_lstm.csv -o stacked.csv

``--scores NAME=PATH`` (formerly ``--model``, still accepted for one release) takes a video table (feature ``NAME``) or a frame table (features
``NAME:mean``, ``NAME:vote``, ``NAME:max``). Fit on videos the base models never trained on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dfd.evaluation.compare import fit_stacker, read_models
from dfd.evaluation.stacker import (
    Stacker,
    build_features,
    input_status,
    stacked_table,
)
from dfd.scores import write_table
from dfd_app.cli.common import (
    add_deprecated_alias,
    add_out,
    check_file_out,
    check_table_out,
    model_spec,
)

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="stack_command", metavar="{fit,predict}", required=True)
    f = sub.add_parser("fit", help="fit the stacker on a held-out split -> stacker.json")
    _add_scores(f, "a model's score table on the fit split")
    f.add_argument("--labels", type=Path, help="CSV video_id,label (else the tables' labels)")
    f.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength (1.0)")
    f.add_argument("--oof", type=int, default=5, metavar="K",
                   help="report K-fold out-of-fold AUC on the fit set (0: skip; default 5)")
    f.add_argument("--oof-out", type=Path, help="write the out-of-fold scores as a video table")
    f.add_argument("--seed", type=int, default=0, help="fold-assignment seed (default 0)")
    add_out(f, "stacker JSON to write", type=Path)
    q = sub.add_parser("predict", help="apply a stacker.json -> a stacked video score table")
    q.add_argument("--stacker", type=Path, required=True, help="stacker JSON from `dfd stack fit`")
    _add_scores(q, "a model's score table on the split to score")
    q.add_argument("--labels", type=Path, help="CSV video_id,label copied into the output")
    add_out(q, "stacked video table (.csv/.parquet)", type=Path)


def _add_scores(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--scores", type=model_spec, action="append", metavar="NAME=PATH",
                   help=f"{what} (video or frame table); repeat per model")
    add_deprecated_alias(p, "--model", "--scores", "scores", append=True, type=model_spec,
                         metavar="NAME=PATH")


def _scores(args) -> list:
    if not args.scores:
        raise ValueError("no score tables: give --scores NAME=PATH for each model")
    return args.scores


def fit(args) -> int:
    if args.oof == 1 or args.oof < 0:
        raise ValueError(f"--oof must be 0 (no out-of-fold report) or >= 2 folds, got {args.oof}")
    if not args.C > 0:
        raise ValueError(f"--C must be > 0, got {args.C}")
    if args.oof_out and not args.oof:
        raise ValueError(f"--oof-out {args.oof_out} needs out-of-fold scores: --oof K >= 2")
    # before the fit: an output that cannot be written must not leave half of the results
    check_file_out(args.out, "--out")
    check_table_out(args.oof_out, "--oof-out")
    st, oof_table = fit_stacker(_scores(args), args.labels, C=args.C, seed=args.seed, oof=args.oof,
                                out=args.out)
    report = st.fit_report
    if args.oof_out and oof_table is not None:
        write_table(oof_table, args.oof_out)
    print(f"stacker fitted on {st.n_train} videos ({st.n_train_fake} fake) -> {args.out}")
    for name, c in zip(st.feature_names, st.coef):
        print(f"  {name:<24} coef {c:+.4f}   AUC alone {report['input_auc'][name] or float('nan'):.4f}")
    print(f"  {'average':<24} {'':>11}   AUC {report['input_auc']['average'] or float('nan'):.4f}")
    if "oof_auc" in report:
        print(f"  stacker out-of-fold AUC ({report['oof_folds']} folds): {report['oof_auc'] or float('nan'):.4f}")
    return 0


def predict(args) -> int:
    check_table_out(args.out, "--out")
    st = Stacker.load(args.stacker)
    tables, labels = read_models(_scores(args), args.labels)
    lacking = sorted(set(st.models) - set(tables))
    if lacking:
        raise SystemExit(f"stacker {args.stacker} needs model(s) {lacking}; give --scores NAME=PATH for each")
    feats = build_features({n: tables[n] for n in st.models})
    p = st.predict_features(feats)
    out = stacked_table(feats, p, labels, status=input_status(tables))
    write_table(out, args.out)
    print(f"stacked {int(out['status'].eq('ok').sum())}/{len(out)} videos -> {args.out}")
    return 0


def run(args) -> int:
    return fit(args) if args.stack_command == "fit" else predict(args)
