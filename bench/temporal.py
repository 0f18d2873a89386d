"""Temporal model benchmark: forward throughput, a training step, and a GPU memory estimate.

    .venv/bin/python bench/temporal.py                      # all four backbones, T=16, 224 px
    .venv/bin/python bench/temporal.py --backbones resnet50 --repeats 3
    .venv/bin/python bench/temporal.py --memory-only        # activation-size estimate only

Forward: ``predict_on_batch`` on random uint8 clips (one warm-up batch, then ``--repeats``
timed ones). Training step: ResNet50 ``train_on_batch`` in this process; the ResNeXt step
runs in a child process killed after ``--train-timeout`` seconds (TF's CPU gradient of grouped
convolutions is extremely slow). Memory: the sum of every layer's output size of the
per-frame CNN (what backprop keeps), times T, plus 16 bytes per parameter (weights,
gradients, Adam moments); a rough lower bound, since TF also needs workspace.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ALL = ("resnet50", "resnet152", "resnext50", "resnext101")
GPU_GB = (16, 40, 80)


def build(backbone, clip_len, face_size, input_size):
    from temporal_tf.model import build_temporal_model

    return build_temporal_model(backbone, clip_len=clip_len, face_size=face_size,
                                input_size=input_size)


def inputs(batch, clip_len, size, seed=0):
    rng = np.random.default_rng(seed)
    return {"faces": rng.integers(0, 256, (batch, clip_len, size, size, 3), dtype=np.uint8),
            "mask": np.ones((batch, clip_len), bool)}


def forward(backbone, args):
    t0 = time.perf_counter()
    model = build(backbone, args.clip_len, args.face_size, args.input_size)
    built = time.perf_counter() - t0
    x = inputs(args.batch, args.clip_len, args.input_size)
    t0 = time.perf_counter()
    model.predict_on_batch(x)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - t0)
    per_batch = float(np.median(times))
    clips = args.batch / per_batch
    print(f"{backbone:11s} build {built:5.1f} s  first batch {warm:6.1f} s  "
          f"{per_batch:6.2f} s/batch  {clips:6.3f} clips/s  {clips * args.clip_len:6.2f} frames/s  "
          f"params {model.count_params() / 1e6:.1f} M", flush=True)
    return model


def train_step(backbone, args):
    import keras

    model = build(backbone, args.clip_len, args.face_size, args.input_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    x = inputs(args.batch, args.clip_len, args.input_size)
    y = np.ones((args.batch, 1), np.float32)
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    print(f"{backbone:11s} train step (batch {args.batch}): first {first:.1f} s (with tracing), "
          f"then {time.perf_counter() - t0:.1f} s", flush=True)


def train_step_with_timeout(backbone, args):
    cmd = [sys.executable, __file__, "--train-only", backbone, "--batch", str(args.batch),
           "--clip-len", str(args.clip_len), "--face-size", str(args.face_size),
           "--input-size", str(args.input_size)]
    proc = subprocess.Popen(cmd)
    try:
        proc.wait(timeout=args.train_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"{backbone:11s} train step (batch {args.batch}): did not finish within "
              f"{args.train_timeout} s (CPU grouped-conv gradient)", flush=True)


def activation_elements(frame_model) -> int:
    """Sum of the output sizes of every layer of a per-frame model (per image)."""
    total = 0
    for layer in frame_model.layers:
        for out in (layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]):
            total += int(np.prod([d for d in out.shape[1:]]))
    return total


def memory_estimate(backbones, clip_len, face_size):
    from temporal_tf import backbones as bb

    print(f"\nGPU memory estimate for training, T={clip_len}, {face_size} px "
          f"(activations kept for backprop + 16 B/parameter for weights, grads, Adam):")
    print(f"{'backbone':11s} {'params':>8s} {'act/frame':>10s} {'fp32/clip':>10s} "
          f"{'fp16/clip':>10s}   max batch fp32 | mixed fp16 at " + " / ".join(f"{g} GB" for g in GPU_GB))
    for name in backbones:
        cnn = bb.get_backbone(name, input_shape=(face_size, face_size, 3), pooling="avg")
        act = activation_elements(cnn)
        fixed = 16 * cnn.count_params()
        per32, per16 = act * 4 * clip_len, act * 2 * clip_len
        fits = []
        for per in (per32, per16):
            fits.append("/".join(str(max(0, int((0.9 * g * 2**30 - fixed) // per))) for g in GPU_GB))
        print(f"{name:11s} {cnn.count_params() / 1e6:7.1f}M {act / 1e6:9.1f}M "
              f"{per32 / 2**30:8.2f}GB {per16 / 2**30:8.2f}GB   {fits[0]:>12s} | {fits[1]}",
              flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbones", nargs="+", default=list(ALL), choices=ALL)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--face-size", type=int, default=224)
    p.add_argument("--input-size", type=int, default=256, help="face side fed in (shards: 256)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-timeout", type=int, default=90)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--memory-only", action="store_true")
    p.add_argument("--train-only", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_only:
        train_step(args.train_only, args)
        return 0
    import tensorflow as tf

    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}), devices "
          f"{[d.device_type for d in tf.config.list_physical_devices()]}; T={args.clip_len}, "
          f"{args.input_size} px in -> {args.face_size} px, batch {args.batch}", flush=True)
    if not args.memory_only:
        for name in args.backbones:
            forward(name, args)
        if not args.no_train:
            if "resnet50" in args.backbones:
                train_step("resnet50", args)
            if "resnext50" in args.backbones:
                train_step_with_timeout("resnext50", args)
    memory_estimate(args.backbones, args.clip_len, args.face_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
