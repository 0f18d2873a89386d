"""Throughput of the self-blended-fake stage and of the H.264 augmentation, each alone.

Faces: the public-domain astronaut of scikit-image, aligned at 256 px (margin 1.3) with its
RetinaFace keypoints, each copy shifted a little so no two are equal. Printed (images/s):

* ``self_blend`` on batches (a ``tf.function``, one call per batch);
* the same inside ``tf.data`` (``dfd.training.sbi.apply_sbi``, fakes="sbi": every REAL face
  and its fake, counted as output images), parallel map as in training;
* ``codec_batch``: an H.264 re-encode of every face (intra-only, one clip per batch, CRF
  drawn from 18-40 per batch) — single-threaded per call, as one ``tf.py_function``;
* the same with ``tf.data`` running several batches in parallel;
* with ``--fit``: Meso-4 ``model.fit`` images/s through ``make_dataset`` on shards of those
  faces (written to ``--work``), ``fakes="real"`` vs ``fakes="sbi"`` — whether training
  stays compute-bound with self-blended fakes (both share the same CPU cores here).

    .venv/bin/python bench/sbi.py [--batch 32] [--batches 20] [--size 256] [--fit]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def astronaut_faces(n: int, size: int):
    """``n`` aligned astronaut faces (uint8 [n, size, size, 3]) with landmarks and box."""
    import numpy as np
    from skimage.data import astronaut

    from data_prep.faces import Detection, align_face, get_detector
    from data_prep.landmarks import crop_coordinates

    img = astronaut()
    (det,) = get_detector("retinaface").detect([img])[0][:1]
    faces, lms, boxes = [], [], []
    rng = np.random.default_rng(0)
    for _ in range(n):
        dx, dy = rng.uniform(-4, 4, 2)
        d = Detection(tuple(v + (dx if i % 2 == 0 else dy) for i, v in enumerate(det.box)),
                      det.confidence,
                      {k: (x + dx, y + dy) for k, (x, y) in det.keypoints.items()})
        faces.append(align_face(img, d, size, 1.3))
        lm, box = crop_coordinates(d, 1.3)
        lms.append(lm)
        boxes.append(box)
    return np.stack(faces), np.stack(lms), np.stack(boxes)


def rate(fn, batches: int, per_call: int) -> float:
    fn()  # warm-up (tracing)
    t = time.perf_counter()
    for _ in range(batches):
        fn()
    return batches * per_call / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--fit", action="store_true", help="also time Meso-4 training, real vs sbi")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dfd-bench-sbi"))
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    from dfd.training.augment import apply_codec, codec_batch
    from dfd.training.config import AugmentConfig, SBIConfig
    from dfd.training.sbi import apply_sbi, self_blend

    b, size = args.batch, args.size
    faces, lms, boxes = astronaut_faces(b, size)
    print(f"faces: {b} x {size}px astronaut crops per batch, {args.batches} batches, "
          f"{os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}), "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}")

    cfg = SBIConfig()
    blend = tf.function(lambda f, lm, bx, s: self_blend(f, lm, bx, s, cfg).fake)
    ft, lt, bt = tf.constant(faces), tf.constant(lms), tf.constant(boxes)
    step = iter(range(10**9))
    r_sbi = rate(lambda: blend(ft, lt, bt, tf.constant([0, next(step)])).numpy(),
                 args.batches, b)

    n = b * args.batches
    idx = np.arange(n) % b
    ds = tf.data.Dataset.from_tensor_slices(
        ({"face": faces[idx], "landmarks": lms[idx], "crop_box": boxes[idx]},
         np.zeros(n, np.float32), np.ones(n, np.float32)))
    ds = apply_sbi(ds, "sbi", 0.5, 2 * b, seed=0, cfg=cfg).batch(b).prefetch(2)

    def drain():
        for _ in ds:
            pass
    drain()  # warm-up
    t = time.perf_counter()
    drain()
    r_sbi_data = 2 * n / (time.perf_counter() - t)

    aug = AugmentConfig(codec_prob=1.0, codec_crf=(18, 40))
    r_codec = rate(lambda: codec_batch(faces, (0, next(step)), aug), args.batches, b)
    cds = tf.data.Dataset.from_tensor_slices(
        (faces[idx], np.zeros(n, np.float32), np.ones(n, np.float32))).batch(b)
    cds = apply_codec(cds, aug, "frames", 0)
    for _ in cds:
        pass
    t = time.perf_counter()
    for _ in cds:
        pass
    r_codec_data = n / (time.perf_counter() - t)

    print(f"{'stage':<44}{'images/s':>10}")
    print(f"{'SBI self_blend, one batch per call':<44}{r_sbi:>10.1f}")
    print(f"{'SBI in tf.data (fakes=sbi, real+fake out)':<44}{r_sbi_data:>10.1f}")
    print(f"{'H.264 codec_batch, one batch per call':<44}{r_codec:>10.1f}")
    print(f"{'H.264 in tf.data (parallel batches)':<44}{r_codec_data:>10.1f}")
    if args.fit:
        for fakes, r in fit_rates(faces, lms, boxes, args).items():
            print(f"{'Meso-4 model.fit, fakes=' + fakes:<44}{r:>10.1f}")
    return 0


def _EpochTimer():
    import keras

    class Timer(keras.callbacks.Callback):
        times: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    timer.times = []
    return timer


def fit_rates(faces, lms, boxes, args) -> dict:
    """Meso-4 training images/s (epoch 2 of 2) with fakes="real" and fakes="sbi"."""
    import keras

    from data_prep.shard_writer import ShardWriter
    from dfd import schema
    from dfd.training.config import AugmentConfig, TrainConfig
    from dfd.training.data import make_dataset
    from mesonet_tf.models import Meso4

    n = args.batch * args.batches
    shard_dir = args.work / "shards"
    with ShardWriter(shard_dir, "astro", max_records=n) as w:
        for i in range(n):  # half REAL, half FAKE (the same faces: timing only)
            j = i % len(faces)
            w.add(schema.FaceRecord(video_id=f"a{i}", label=i % 2,
                                    faces=[schema.encode_png(faces[j])], frame_indices=[0],
                                    landmarks=[lms[j]], crop_boxes=[boxes[j]]))
    schema.write_index(shard_dir, w.committed)
    out = {}
    for fakes in ("real", "sbi"):
        cfg = TrainConfig(run_dir=str(args.work / "run"), train=[str(shard_dir)],
                          batch_size=args.batch, face_size=args.size, class_balance="none",
                          augment=AugmentConfig(enabled=False), fakes=fakes)
        ds = make_dataset(cfg, training=True).repeat()
        steps = args.batches  # sbi: n/2 REAL faces give n images as well
        timer = _EpochTimer()
        keras.utils.set_random_seed(0)
        model = Meso4()
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        model.fit(ds, steps_per_epoch=steps, epochs=2, callbacks=[timer], verbose=0)
        out[fakes] = steps * args.batch / timer.times[-1]
    return out


if __name__ == "__main__":
    sys.exit(main())
