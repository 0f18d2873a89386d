"""``dfd calibrate``: fit Platt scaling on validation scores and fold it into the model.

    dfd predict --model runs/meso4/best.keras --shards runs/shards --split val \\
        --out runs/scores/meso4-val.csv
    dfd calibrate --model runs/meso4/best.keras --scores runs/scores/meso4-val.csv \\
        --out runs/export/meso4_calibrated

The output is an export (``dfd export``: ``OUT/<version>/`` with the SavedModel,
``model.keras`` and ``preset.json``) whose preset also records the ``calibration`` (a, b,
counts) and keeps the source's ``face_margin``. Labels may be FAKE/REAL or 1/0. Fit on
scores of videos the model never trained on.
"""

from __future__ import annotations

import argparse

from dfd.evaluation.calibration import BAND_CONFIDENCE, calibrate_model, describe
from dfd.export import DEFAULT_VERSION
from dfd_app.cli.common import add_out, add_weights_dir, probability


def verdict_precision(text: str) -> float:
    """An argparse ``type``: the precision a verdict must reach, within [0.5, 1] (below 0.5 a
    verdict would be right less often than a coin)."""
    value = probability(text)
    if value < 0.5:
        raise argparse.ArgumentTypeError(f"must be within [0.5, 1], got {text!r}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="a .keras file, an export folder with model.keras, or a registered "
                             "name (the authors' weights are folded to a P(fake) output first)")
    parser.add_argument("--scores", required=True,
                        help="video score table with labels (dfd predict --out) on validation data")
    add_out(parser, "export folder; the model goes into OUT/<version>/")
    parser.add_argument("--version", type=int, default=DEFAULT_VERSION,
                        help="version number, the sub-folder of --out (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT/<version> (default: refuse)")
    add_weights_dir(parser)
    parser.add_argument("--uncertain-scores", metavar="TABLE",
                        help="video score table (with labels) of sources the model never trained "
                             "on: the uncertain band of its verdicts is chosen on it (after the "
                             "calibration) and recorded in the export's preset; with several "
                             "sources in its 'source' column (or conditions in a 'condition' "
                             "column: the same videos re-coded) the precision must hold in each")
    parser.add_argument("--uncertain-frames", metavar="TABLE",
                        help="the frame table of the same scoring as --uncertain-scores (dfd "
                             "predict --frames-out): the band is then chosen on each video's "
                             "frames calibrated one by one and aggregated, as the calibrated "
                             "export scores them (without it, each video's score is calibrated: "
                             "exact for videos of one frame only)")
    parser.add_argument("--min-precision", type=verdict_precision, default=0.8,
                        help="precision the verdicts outside the uncertain band must reach on "
                             "--uncertain-scores (default: %(default)s)")
    parser.add_argument("--precision-confidence", type=probability, default=BAND_CONFIDENCE,
                        help="the precision of each side's verdicts, over all its videos (each "
                             "video_id counted once, however many rows it has), must reach "
                             "--min-precision at this one-sided lower confidence bound, so a "
                             "verdict is not given on a handful of videos (default: "
                             "%(default)s; 0 for the point estimate only)")
    parser.add_argument("--threshold", type=probability, default=0.5,
                        help="the verdict threshold the band is chosen around (default: %(default)s)")


def run(args) -> int:
    out, scaling = calibrate_model(args.model, args.scores, args.out, args.weights_dir,
                                   args.version, args.overwrite, args.uncertain_scores,
                                   args.min_precision, args.threshold,
                                   args.precision_confidence or None, args.uncertain_frames)
    print(f"calibrated {args.model} -> {out}: {describe(scaling)}")
    return 0
