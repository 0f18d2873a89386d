"""Training throughput: every shipped architecture, the SBI stage alone, and Meso-4's input path.

First (``--archs``, default on): training images/s of each shipped single-face architecture
(``train_on_batch`` on random uint8 faces: the model's compute alone, Adam + MSE as ``dfd
train``): Meso-4 at 256 and 128 px, MesoInception-4 at 256 px, EfficientNetB0 at 96/128/160
px (the side frame_tf's default was picked by), EfficientNet-Lite0 at 128/192/224 px (224: the
shipped default ``dfd_default``; ``+sam``: with its sharpness-aware step, ``--sam-rho 0.05``,
printed with its ratio to the plain step), Lite2 at 192 px and Xception at 160 px
(``--archs-list`` changes the list, ``NAME@SIZE[+sam]`` items); then the self-blended-fake stage alone (``dfd.training.sbi.self_blend``
on a batch of 256-px faces without landmarks: the standard keypoints are used).

Then the study comparison for Meso-4 (``--no-study`` skips it):

Both paths read the SAME DFDC face crops (224x224 JPEGs from ../shared/data/dfdc_faces,
resized to 256 on load, as the study's ``flow_from_directory(target_size=(256, 256))``):

* ours: shards of the original JPEG bytes (what ``dfd prep`` stores for crop sets), read by
  ``dfd.training.data.make_dataset`` (parallel decode + resize in tf.data, prefetch);
* study: Keras' ``ImageDataGenerator().flow_from_directory`` over a ``df/`` + ``real/`` folder
  of the JPEGs (per-image PIL load + resize + numpy, in Python). Keras 3 removed the public
  ``keras.preprocessing.image.ImageDataGenerator``; it still ships the same code as
  ``keras.src.legacy.preprocessing.image.ImageDataGenerator``, which is used here. When that
  import fails, a per-image PIL/numpy generator doing the same steps stands in (printed).

Printed for each path: input pipeline alone (images/s, no model) and ``model.fit`` training
images/s (epoch 2 of 2; epoch 1 warms up), then the ratios. Crops and shards go to
``--work`` (default /tmp/dfd-bench-train), never into the repository.

    .venv/bin/python bench/train.py [--n 1000] [--batch 32] [--work /tmp/dfd-bench-train]
                                    [--steps 5] [--archs-list meso4@256,...] [--no-study]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tarfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(os.environ.get("DFD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FACES = SHARED / "data" / "dfdc_faces"


def prepare(work: Path, n: int):
    """Extract ``n`` crops into ``work/jpeg/{df,real}`` and write them as shards."""
    from data_prep.shard_writer import ShardWriter
    from dfd import schema
    from dfd.labels import parse_label

    jpeg_dir, shard_dir = work / "jpeg", work / "shards"
    if (shard_dir / schema.INDEX_FILE).exists() and len(list(jpeg_dir.rglob("*.jpg"))) == n:
        return jpeg_dir, shard_dir
    if not FACES.exists():
        sys.exit(f"research data not found at {FACES} (set DFD_SHARED)")
    labels = {}
    with open(FACES / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            labels[(row["archive"], row["file"])] = parse_label(row["label"])
    for sub in ("df", "real"):
        (jpeg_dir / sub).mkdir(parents=True, exist_ok=True)
    taken = 0
    with ShardWriter(shard_dir, "crops", max_records=256) as writer:
        for tar_path in sorted(FACES.glob("faces-*.tar")):
            with tarfile.open(tar_path) as tar:
                for member in tar:
                    name = Path(member.name).name
                    label = labels.get((tar_path.name, name))
                    if not member.isfile() or label not in (0, 1):
                        continue
                    data = tar.extractfile(member).read()
                    (jpeg_dir / ("df" if label == 1 else "real") / name).write_bytes(data)
                    writer.add(schema.FaceRecord(video_id=name, label=label, faces=[data],
                                                 frame_indices=[0], source="dfdc_faces"))
                    taken += 1
                    if taken >= n:
                        break
            if taken >= n:
                break
    schema.write_index(shard_dir, writer.committed)
    return jpeg_dir, shard_dir


def study_generator(jpeg_dir: Path, batch: int):
    """The study's input path; returns (iterator, description)."""
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:
        return _pil_generator(jpeg_dir, batch), "per-image PIL/numpy generator (stand-in)"
    gen = ImageDataGenerator().flow_from_directory(
        str(jpeg_dir), target_size=(256, 256), batch_size=batch, class_mode="binary",
        shuffle=True, seed=0)
    return gen, "ImageDataGenerator.flow_from_directory (keras.src.legacy)"


def _pil_generator(jpeg_dir: Path, batch: int):
    import keras
    import numpy as np
    from PIL import Image

    files = sorted(jpeg_dir.rglob("*.jpg"))
    labels = np.array([0.0 if f.parent.name == "df" else 1.0 for f in files], np.float32)

    class Gen(keras.utils.PyDataset):
        def __len__(self):
            return len(files) // batch

        def __getitem__(self, i):
            idx = range(i * batch, (i + 1) * batch)
            x = np.stack([np.asarray(Image.open(files[j]).convert("RGB")
                                     .resize((256, 256), Image.NEAREST), np.float32)
                          for j in idx])
            return x, labels[list(idx)]

    return Gen()


def input_rate(batches, steps: int, batch: int) -> float:
    it = iter(batches)
    next(it)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t)


def fit_rate(data, steps: int | None, images: int) -> float:
    """Training images/s of a fresh Meso-4 over epoch 2 (``steps`` None: one pass of data)."""
    import keras

    from dfd.training.factories import compile_metrics
    from mesonet_tf.models import Meso4

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    keras.utils.set_random_seed(0)
    model = Meso4()
    model.compile(keras.optimizers.Adam(1e-3), "mse", metrics=compile_metrics(),
                  jit_compile=False)
    model.fit(data, steps_per_epoch=steps, epochs=2, callbacks=[Timer()], verbose=0,
              shuffle=False)
    return images / times[-1]


ARCHS = ("meso4@256", "meso4@128", "mesoinception4@256", "efficientnetb0@96",
         "efficientnetb0@128", "efficientnetb0@160", "efficientnet_lite0@128",
         "efficientnet_lite0@192", "efficientnet_lite0@224", "efficientnet_lite0@224+sam",
         "efficientnet_lite2@192", "xception@160")
SAM_RHO = 0.05  # the shipped default's --sam-rho


def arch_rate(name: str, size: int, batch: int, steps: int, sam_rho: float = 0.0) -> float:
    """Training images/s of registered architecture ``name`` at ``size`` px (compute only;
    ``sam_rho``: with ``dfd train``'s sharpness-aware step)."""
    import keras
    import numpy as np

    from dfd import presets
    from dfd.training.sharpness import fit_step_installed

    keras.utils.set_random_seed(0)
    model = presets.get_builder(name).fn(input_shape=(size, size, 3))
    model.compile(keras.optimizers.Adam(1e-3), "mse", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = (rng.random((batch, 1)) > 0.5).astype("float32")
    with fit_step_installed(model, sam_rho):
        for _ in range(2):  # tracing and warm-up
            model.train_on_batch(x, y)
        t = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return steps * batch / (time.perf_counter() - t)


def sbi_rate(batch: int, steps: int, size: int = 256) -> float:
    """Images/s of the self-blended-fake stage alone (one ``tf.function`` call per batch)."""
    import numpy as np
    import tensorflow as tf

    from dfd.training.config import SBIConfig
    from dfd.training.sbi import self_blend

    cfg = SBIConfig()
    faces = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3),
                                                          dtype=np.uint8))
    lms, boxes = tf.fill([batch, 5, 2], -1.0), tf.fill([batch, 4], -1.0)
    blend = tf.function(lambda f, s: self_blend(f, lms, boxes, s, cfg).fake)
    blend(faces, tf.constant([0, 0])).numpy()
    t = time.perf_counter()
    for i in range(steps):
        blend(faces, tf.constant([0, i + 1])).numpy()
    return steps * batch / (time.perf_counter() - t)


def print_arch_rates(items, batch: int, steps: int) -> None:
    print(f"training images/s, model compute only (batch {batch}, {steps} steps after 2 "
          f"warm-up; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    from dfd import onednn_enabled, presets

    print(f"TensorFlow oneDNN kernels: {onednn_enabled()} (TF_ENABLE_ONEDNN_OPTS=0 turns them off)")

    print(f"{'architecture':<26}{'input':>7}{'params':>11}{'images/s':>10}")
    plain = {}
    for item in items:
        name, _, size = item.partition("@")
        size, _, extra = (size or "256").partition("+")
        if extra not in ("", "sam"):
            raise SystemExit(f"--archs-list: unknown suffix +{extra} in {item!r} (known: +sam)")
        size, sam = int(size), extra == "sam"
        n = presets.get_builder(name).fn(input_shape=(size, size, 3)).count_params()
        rate = arch_rate(name, size, batch, steps, SAM_RHO if sam else 0.0)
        label = f"{name} + SAM" if sam else name
        ratio = (f"  {rate / plain[name, size]:.2f}x the plain step (--sam-rho {SAM_RHO})"
                 if sam and (name, size) in plain else "")
        if not sam:
            plain[name, size] = rate
        print(f"{label:<26}{size:>7}{n:>11,}{rate:>10.1f}{ratio}", flush=True)
    print(f"{'SBI stage alone':<26}{256:>7}{'':>11}{sbi_rate(batch, max(steps, 10)):>10.1f}",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per architecture")
    ap.add_argument("--archs-list", default=",".join(ARCHS),
                    help="NAME@SIZE items, comma-separated (registered builders)")
    ap.add_argument("--no-archs", action="store_true", help="skip the architecture table")
    ap.add_argument("--no-study", action="store_true", help="skip Meso-4 vs the study's input")
    ap.add_argument("--n", type=int, default=1000, help="face crops to use")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dfd-bench-train"))
    ap.add_argument("--input-only", action="store_true", help="skip the model.fit timing")
    args = ap.parse_args()
    if not args.no_archs:
        print_arch_rates([a for a in args.archs_list.split(",") if a], args.batch, args.steps)
    if args.no_study:
        return 0

    import tensorflow as tf

    from dfd.training.config import AugmentConfig, TrainConfig
    from dfd.training.data import make_dataset

    jpeg_dir, shard_dir = prepare(args.work, args.n)
    steps = args.n // args.batch  # input-only timing: whole batches
    fit_steps = -(-args.n // args.batch)  # model.fit: one pass, as the study's epoch
    cfg = TrainConfig(run_dir=str(args.work / "run"), train=[str(shard_dir)],
                      batch_size=args.batch, face_size=256, class_balance="none",
                      augment=AugmentConfig(enabled=False), shuffle_buffer=1024)
    ours = make_dataset(cfg, training=True).repeat()
    gen, study_name = study_generator(jpeg_dir, args.batch)
    print(f"images: {args.n} DFDC crops (224x224 JPEG -> 256), batch {args.batch}, "
          f"{fit_steps} steps/epoch, {os.cpu_count()} CPUs "
          f"(load {os.getloadavg()[0]:.1f}), "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}")
    print("ours : dfd.training.data.make_dataset over shards of the JPEG bytes")
    print(f"study: {study_name}")
    rows = {}
    rows["input"] = (input_rate(ours, steps, args.batch),
                     input_rate(_cycle(gen), steps, args.batch))
    if not args.input_only:
        rows["fit"] = (fit_rate(ours, fit_steps, fit_steps * args.batch),
                       fit_rate(gen, None, args.n))
    print(f"{'':<22}{'ours img/s':>12}{'study img/s':>13}{'ratio':>8}")
    for name, (a, b) in rows.items():
        label = "input pipeline alone" if name == "input" else "Meso-4 model.fit"
        print(f"{label:<22}{a:>12.1f}{b:>13.1f}{a / b:>7.1f}x")
    return 0


def _cycle(gen):
    while True:
        for i in range(len(gen)):
            yield gen[i]


if __name__ == "__main__":
    sys.exit(main())
