"""``dfd calibrate``: fit Platt scaling on validation scores and fold it into the model.

    dfd predict --model runs/meso4/best.keras --shards runs/shards --split val \\
        --out runs/scores/meso4-val.csv
    dfd calibrate --model runs/meso4/best.keras --scores runs/scores/meso4-val.csv \\
        --out runs/export/meso4_calibrated

The output folder is an export (``dfd export``: SavedModel + ``model.keras`` +
``preset.json``) whose preset also records the ``calibration`` (a, b, counts) and keeps the
source's ``face_margin``. Fit on scores of videos the model never trained on.
"""

from __future__ import annotations

import logging

from dfd.evaluation.calibration import (
    choose_uncertain_band,
    describe,
    fit_platt,
    fold_into_model,
    load_for_calibration,
)
from dfd.export import export_savedmodel
from dfd.inference.loading import preset_of
from dfd.labels import parse_label
from dfd.scores import STATUS_OK, read_table
from dfd_app.cli.common import add_out, add_weights_dir

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="a .keras file, an export folder with model.keras, or a registered "
                             "name (the authors' weights are folded to a P(fake) output first)")
    parser.add_argument("--scores", required=True,
                        help="video score table with labels (dfd predict --out) on validation data")
    add_out(parser, "new (or empty) export folder")
    add_weights_dir(parser)
    parser.add_argument("--uncertain-scores", metavar="TABLE",
                        help="video score table (with labels) of sources the model never trained "
                             "on: the uncertain band of its verdicts is chosen on it (after the "
                             "calibration) and recorded in the export's preset")
    parser.add_argument("--min-precision", type=float, default=0.8,
                        help="precision the verdicts outside the uncertain band must reach on "
                             "--uncertain-scores (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="the verdict threshold the band is chosen around (default: %(default)s)")


def run(args) -> int:
    table = read_table(args.scores)
    if "label" not in table.columns:
        raise ValueError(f"{args.scores} has no label column: give the video table of "
                         "`dfd predict --out` on labelled validation shards")
    if "status" in table.columns:
        table = table[table["status"] == STATUS_OK]
    scaling = fit_platt(table["p_fake"], table["label"], fitted_on=str(args.scores))
    model = load_for_calibration(args.model, args.weights_dir)
    calibrated = fold_into_model(model, scaling)
    source = preset_of(args.model)
    margin = source.face_margin if source is not None else None
    extra = {"calibration": scaling.to_dict()}
    if args.uncertain_scores:
        cross = read_table(args.uncertain_scores)
        if "label" not in cross.columns:
            raise ValueError(f"{args.uncertain_scores} has no label column")
        if "status" in cross.columns:
            cross = cross[cross["status"] == STATUS_OK]
        labels = [parse_label(v) for v in cross["label"]]
        extra["uncertain"] = choose_uncertain_band(
            labels, scaling.apply(cross["p_fake"].to_numpy(float)), args.threshold,
            args.min_precision, fitted_on=str(args.uncertain_scores))
        log.info("uncertain band %s", extra["uncertain"])
    out = export_savedmodel(calibrated, args.out, source=str(args.model), face_margin=margin,
                            extra_info=extra)
    log.info("%s", describe(scaling))
    print(f"calibrated {args.model} -> {out}: {describe(scaling)}")
    return 0
