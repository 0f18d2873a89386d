"""Faces per second of Meso-4 / MesoInception-4 through dfd.inference.frames.score_faces.

    .venv/bin/python bench/bench_mesonet_predict.py [--faces 512] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from dfd.inference.frames import score_faces
    from mesonet_tf.models import Meso4, MesoInception4

    x = np.random.default_rng(0).integers(0, 256, (args.faces, 256, 256, 3), dtype=np.uint8)
    for builder in (Meso4, MesoInception4):
        model = builder()
        score_faces(model, x[: args.batch_size], args.batch_size)  # warm-up / trace
        t = time.perf_counter()
        score_faces(model, x, args.batch_size)
        dt = time.perf_counter() - t
        print(f"{model.name:16s} {args.faces / dt:8.1f} faces/s (batch {args.batch_size})")


if __name__ == "__main__":
    main()
