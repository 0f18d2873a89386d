"""``dfd audit``: which image properties alone separate FAKE from REAL in a crop set.

    dfd audit ../shared/data/dfdc_faces ../shared/data/ffpp_faces --sample 500
    dfd audit split.csv --split train --out audit.csv --items audit-items.csv
    dfd audit split.csv --split test --scores scores.csv

Per source and property (width, JPEG quantisation, sharpness, inner/outer sharpness,
brightness, saturation): the REAL and FAKE medians and the property's ROC-AUC as a FAKE score.
A figure far from 0.5 separates the labels (flagged ``separates``): if it does so on one source
and not on another, it is a shortcut a model learns there and loses elsewhere. With
``--scores`` (a model's ``dfd predict --out`` on the same images), also whether the model
ranks by each property within each class (Spearman rho of P(fake) with it among REAL items
and among FAKE items; flagged ``RANKS``): the check that a model learned the shortcut. No model
is run. Exit status 0 whatever is found.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from data_prep import audit, manifests
from dfd.evaluation import inputs
from dfd_app.cli.common import add_no_progress, add_out, check_file_out

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="face-crop sets (a folder with metadata.csv) or manifests "
                             "(`dfd split --out`)")
    parser.add_argument("--split", default=None,
                        help="audit this split of a manifest only (e.g. train: what a model "
                             "trained on it can learn)")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="at most N images per source and label (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--flag", type=float, default=audit.DEFAULT_FLAG,
                        help="flag a property whose |ROC-AUC - 0.5| reaches this "
                             "(default: %(default)s)")
    parser.add_argument("--scores", default=None, metavar="CSV",
                        help="a model's scores of the same images (`dfd predict --out`): also "
                             "report the within-class rank correlation of P(fake) with each "
                             "property")
    add_out(parser, "also write the summary to this CSV", required=False)
    parser.add_argument("--items", default=None, metavar="CSV",
                        help="also write every image's figures to this CSV")
    add_no_progress(parser)


def run(args) -> int:
    if not 0.0 < args.flag <= 0.5:
        log.error("--flag must be in (0, 0.5], got %r", args.flag)
        return 2
    try:
        # before the images are measured: an output that cannot be written loses that work
        check_file_out(args.out, "--out")
        check_file_out(args.items, "--items")
        loaded = [manifests.load_manifest(s) for s in args.sources]
        merged = manifests.merge_manifests(loaded)
        result = audit.audit_items(merged.items, split=args.split, sample=args.sample,
                                   seed=args.seed, flag=args.flag)
        summary = result.summary
        if args.scores:
            # the truth comes from the manifest, so dfd detect's table (its verdict a
            # prediction) serves as well as dfd predict's: only p_fake is read
            scores = inputs.read_scores(args.scores, have_truth=True)
            ranks, unmatched = audit.model_ranks(result.items, scores)
            if unmatched:
                log.warning("%d of the scores name no audited image or video (another split "
                            "or --sample?): left out", unmatched)
            summary = summary.merge(
                ranks.drop(columns=["n_real", "n_fake"]), on=["source", "figure"], how="left")
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    for table, where in ((summary, args.out), (result.items, args.items)):
        if where:
            Path(where).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(where, index=False)
    shown = summary.copy()
    for col in ("median_real", "median_fake"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    shown["roc_auc_fake"] = shown["roc_auc_fake"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    shown["separates"] = shown["separates"].map({True: "SEPARATES", False: ""})
    if "ranks" in shown.columns:
        for col in ("rho_real", "rho_fake"):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}")
        shown["ranks"] = shown["ranks"].map({True: "RANKS"}).fillna("")
    print(shown.to_string(index=False))
    flagged = summary[summary["separates"]]
    print(f"{len(result.items)} images audited ({result.unreadable} unreadable, "
          f"{result.videos_skipped} video rows left out); {len(flagged)} figure(s) "
          "separate FAKE from REAL"
          + (": " + ", ".join(f"{s} {f} {a:.3f}" for s, f, a in
                              flagged[["source", "figure", "roc_auc_fake"]].itertuples(index=False))
             if len(flagged) else ""))
    if "ranks" in summary.columns:
        used = summary[summary["ranks"].eq(True)]
        print(f"the model ranks by {len(used)} figure(s) within both classes"
              + (": " + ", ".join(f"{s} {f} (rho REAL {r:+.2f}, FAKE {k:+.2f})" for s, f, r, k in
                                  used[["source", "figure", "rho_real", "rho_fake"]]
                                  .itertuples(index=False)) if len(used) else ""))
    return 0

