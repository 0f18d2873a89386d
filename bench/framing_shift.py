"""Does a crop set's framing cost a model trained on another one? Scores at equal zoom.

FF++'s given crops are centred 0.073 face scales ``l`` above DFDC's (``bench/crop_margin.py
--set ffpp_faces``), at the same margin. Models trained on DFDC then see FF++'s faces framed
higher. This bench cuts every crop of both sets of a ``dfd split`` manifest to one smaller
margin (0.90, so that a move of 0.073 ``l`` fits in either crop), once centred as given and
once moved by the offset between the sets, and prints each model's video-level ROC-AUC (mean
P(fake) of a video's frames): FF++ as given / moved to DFDC's centre, DFDC's test split as
given / moved to FF++'s centre. Equal zoom throughout, so only the centre differs::

    .venv/bin/python bench/framing_shift.py /work/runs/split.csv \\
        --model shipped=mesonet_tf/assets/dfd_default.keras --model s128=runs/s128/last.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blur_baseline import read_crops, video_auc, with_videos  # noqa: E402
from dfd.framing import DFDC_CROP_MARGIN, recrop_margin  # noqa: E402

FFPP_CROP_MARGIN = 1.068  # bench/crop_margin.py --set ffpp_faces --every 10, median
FFPP_CENTRE = -0.073  # the same: FF++'s crop centre against DFDC's (0), in l
CUT_MARGIN = 0.90


def main() -> None:
    import keras

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifest")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    args = ap.parse_args()
    m = with_videos(pd.read_csv(args.manifest))
    ffpp = m[m["source"].str.contains("ffpp")]
    dfdc = m[m["source"].str.contains("dfdc") & (m["split"] == "test")]
    sets = {"FF++": (ffpp, read_crops(ffpp), FFPP_CROP_MARGIN, -FFPP_CENTRE),
            "DFDC test": (dfdc, read_crops(dfdc), DFDC_CROP_MARGIN, FFPP_CENTRE)}
    print(f"{len(ffpp)} FF++ crops, {len(dfdc)} DFDC test crops; all cut to margin {CUT_MARGIN}")
    print(f"{'model':<12} {'FF++ as given':>14} {'FF++ moved':>11} {'DFDC as given':>14} "
          f"{'DFDC moved':>11}")
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = keras.models.load_model(path, compile=False)
        side = model.input_shape[1]
        row = []
        for rows, faces, have, move in sets.values():
            for shift in (0.0, move):
                cut = recrop_margin(faces, have, CUT_MARGIN, size=side, shift=shift)
                p = model.predict(cut, batch_size=64, verbose=0).ravel()
                row.append(video_auc(p, rows))
        print(f"{name:<12} " + " ".join(f"{v:>{w}.3f}" for v, w in zip(row, (14, 11, 14, 11))))


if __name__ == "__main__":
    main()
