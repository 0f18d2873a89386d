"""``dfd compare``: every model, the stacker and the plain average on one test split.

    dfd compare --scores meso4=test_meso4.csv --scores lstm=test_lstm.csv \\
                [--val meso4=val_meso4.csv --val lstm=val_lstm.csv --threshold-policy f1] \\
                [--stacker stacker.json] --out runs/compare

Per source (video tables of ``dfd predict`` carry the shards' ``source``): ROC-AUC with its
95% bootstrap interval, in-source or cross-source by ``--trained-on NAME=RUN_DIR`` (what
``dfd train`` recorded) or ``NAME=dfdc+ffpp``; ``--clips NAME=detect.csv --clip-labels
../shared/data``: figures on the labelled clips; ``--reference NAME``: every other model's
ROC-AUC difference from that one per source, with a paired bootstrap interval.

Prints the study's comparison table (accuracy, precision, recall, F1, ROC-AUC, log loss, n)
and writes it as ``comparison.csv`` / ``comparison.md`` next to a full report (ROC and PR
curves of all entries on one figure, metrics.json, index.html): :func:`dfd.evaluation.compare.compare`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dfd.evaluation.compare import compare
from dfd_app.cli.common import add_common_arguments, add_deprecated_alias, model_spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", type=model_spec, action="append", metavar="NAME=PATH",
                   help="a model's test score table (video or frame table); repeat per model")
    add_deprecated_alias(p, "--model", "--scores", "scores", append=True, type=model_spec,
                         metavar="NAME=PATH")
    p.add_argument("--val", type=model_spec, action="append", default=[], metavar="NAME=PATH",
                   help="the same model's validation scores (threshold policy); repeat per model")
    p.add_argument("--stacker", type=Path, help="stacker.json to apply to the test scores")
    p.add_argument("--no-average", action="store_true", help="leave out the plain-average baseline")
    p.add_argument("--trained-on", type=model_spec, action="append", default=[],
                   metavar="NAME=RUN|SOURCES",
                   help="what a model trained on: its run folder / preset.json (dfd train "
                        "records it), a shipped model's file, or the sources whose fakes it saw, e.g. dfdc+ffpp "
                        "('none': self-blended only); sets in- vs cross-source per source")
    p.add_argument("--clips", type=model_spec, action="append", default=[], metavar="NAME=CSV",
                   help="a model's dfd detect table on the labelled clips; repeat per model")
    p.add_argument("--clip-labels", type=Path, metavar="DIR",
                   help="folder holding dfdc_videos/metadata.json and other_videos/labels.csv")
    p.add_argument("--reference", metavar="NAME",
                   help="a model the others are measured against: ROC-AUC difference per "
                        "source with a paired bootstrap interval (paired.csv)")
    add_common_arguments(p)


def run(args) -> int:
    if not args.scores:
        raise ValueError("no score tables: give --scores NAME=PATH for each model")
    done = compare(args.scores, args.val, args.out, args.labels, args.stacker,
                   not args.no_average, args.threshold_policy, args.threshold, args.missing,
                   args.bootstrap, args.seed, args.log_loss_clip, args.trained_on,
                   args.clips, args.clip_labels, args.reference)
    print(done["markdown"], end="")
    print(f"report: {done['report']}")
    return 0
