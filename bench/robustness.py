"""How a model's video ROC-AUC holds under what the internet does to video.

The chosen videos of shards (one split and/or one source) are scored by each model under each
condition of :mod:`dfd.evaluation.robustness` (H.264 at a CRF with the faces of one video coded
as one clip, JPEG, lost resolution, blur); the table gives the video ROC-AUC with its 95%
bootstrap interval, the paired difference to the stored faces (same videos, resampled
together) and the mean P(fake) of each class. Run by hand, not by CI (minutes per model on 2
cores)::

    .venv/bin/python bench/robustness.py --shards SHARDS --source ffpp_faces \\
        --model shipped=dfd_default --model meso4=dfdc_meso4 [--split test] \\
        [--condition h264:35 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CONDITIONS = ("stored", "h264:23", "h264:28", "h264:35", "h264:40", "jpeg:50",
                      "jpeg:30", "shrink:2", "shrink:4", "blur:1.5")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--split", help="one split (default: every record)")
    ap.add_argument("--source", help="one source of the shards, e.g. ffpp_faces")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH|NAME")
    ap.add_argument("--condition", action="append", help="KIND[:VALUE] (default: a set of "
                    f"{len(DEFAULT_CONDITIONS)}, from stored to h264:40)")
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()

    from dfd.evaluation.compare import paired_auc_difference
    from dfd.evaluation.metrics import bootstrap_ci, score_metrics
    from dfd.evaluation.robustness import load_videos, parse_condition, score_videos

    conditions = args.condition or list(DEFAULT_CONDITIONS)
    try:
        for c in conditions:
            parse_condition(c)
    except ValueError as err:
        sys.exit(str(err))
    t0 = time.perf_counter()
    stored = load_videos(args.shards, args.split, args.source)
    if not len(stored):
        sys.exit(f"no labelled record of {args.shards} matches split={args.split} "
                 f"source={args.source}")
    y = stored.labels
    print(f"videos     {len(stored)} ({int(y.sum())} FAKE), {sum(map(len, stored.faces))} faces "
          f"from {args.shards} (split {args.split or 'all'}, source {args.source or 'all'}); "
          f"loaded in {time.perf_counter() - t0:.0f} s")
    held = {c: stored if c == "stored" else stored.degraded(c) for c in conditions}
    print(f"{'model':14s} {'condition':10s} {'ROC-AUC':>8s} {'95% interval':>16s} "
          f"{'vs stored':>9s} {'paired 95%':>18s} {'mean P(fake) REAL / FAKE':>25s}")
    for spec in args.model:
        name, _, path = spec.partition("=")
        ref = None
        for c in conditions:
            p = score_videos(path or name, held[c], model_name=name)["p_fake"].to_numpy()
            auc = score_metrics(y, p)["roc_auc"]
            ci = bootstrap_ci(y, p, n_boot=args.boot, names=("roc_auc",))["roc_auc"]
            if c == "stored":
                ref = p
            diff = paired_auc_difference(y, ref, p, n_boot=args.boot) \
                if ref is not None and c != "stored" else None
            d = (f"{diff[0]:+9.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"
                 if diff and diff[0] is not None else f"{'':9s} {'':18s}")
            print(f"{name:14s} {c:10s} {auc:8.3f} [{ci['low']:.3f}, {ci['high']:.3f}] {d} "
                  f"{p[y == 0].mean():12.3f} / {p[y == 1].mean():.3f}", flush=True)
    print(f"total      {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
