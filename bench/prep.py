"""Benchmark of the per-video prep job (sample -> detect -> align -> write) on DFDC clips.

Prints seconds per video split into decode / detect / align / write (write = PNG encoding of
the faces + ``schema.encode_record``), for the exact ``uniform`` and the codec-aware
``keyframe`` sampler, with MTCNN and RetinaFace; each is repeated and reported as min and
median (other jobs share the CPU). Then the accuracy check over all DFDC videos: against
the exact path (uniform + MTCNN), on how many reference frames each path finds the face, and
the IoU of its face boxes and of its aligned-crop squares with the reference.

Then (``--engines``) the whole ``dfd prep`` run over the DFDC videos: videos/s for one
process, the process pool and Dask with 2 workers (wall time of ``run_prep``, start-up
included), whether their shards are byte-identical, and what loading the face detector per
task instead of once per worker would cost.

    .venv/bin/python bench/prep.py [--repeat 3] [--frames 32] [--clip NAME] [--skip-accuracy]
    .venv/bin/python bench/prep.py --skip-timing --skip-accuracy   # the engines only
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.extract import ExtractConfig, extract_faces, to_face_records  # noqa: E402
from data_prep.faces import alignment_geometry, box_iou, get_detector  # noqa: E402
from data_prep.faces.detectors import Detection  # noqa: E402

VIDEOS = Path(os.environ.get("DFD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
VIDEOS = VIDEOS / "data" / "dfdc_videos"
STAGES = ("decode", "detect", "align", "write", "total", "cpu")


def run_once(path, detector, cfg):
    from dfd import schema

    cpu = time.process_time()
    vf = extract_faces(path, detector, cfg)
    t = time.perf_counter()
    for rec in to_face_records(vf, path.name, label=0):
        schema.encode_record(rec)
    vf.timings["write"] = time.perf_counter() - t
    vf.timings["total"] = sum(vf.timings[k] for k in STAGES[:-2])
    vf.timings["cpu"] = time.process_time() - cpu
    return vf


def timing_table(clip, detectors, samplers, n_frames, repeat):
    print(f"\n== seconds per video: {clip.name}, {n_frames} frames, min / median of {repeat} "
          f"runs, {os.cpu_count()} CPUs (shared; load average {os.getloadavg()[0]:.1f}) ==")
    print("(total = wall seconds of the four stages; cpu = CPU seconds of this process, all "
          "threads: less sensitive to other jobs on the machine)")
    print(f"{'sampler':9s} {'detector':11s} " + " ".join(f"{s:>13s}" for s in STAGES))
    for sampler in samplers:
        for name in detectors:
            det = get_detector(name)
            cfg = ExtractConfig(n_frames=n_frames, sampler=sampler)
            runs = [run_once(clip, det, cfg).timings for _ in range(repeat)]
            cells = []
            for s in STAGES:
                vals = [r[s] for r in runs]
                cells.append(f"{min(vals):6.2f}/{statistics.median(vals):6.2f}")
            print(f"{sampler:9s} {name:11s} " + " ".join(cells), flush=True)


def _crop_square(box, conf, kp):
    cx, cy, side, _ = alignment_geometry(Detection(tuple(box), conf, kp or {}))
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _meso_scorer():
    """Meso4_DF from ../shared/mesonet/weights (None when unavailable)."""
    try:
        from dfd.inference.frames import as_scorer

        return as_scorer("meso4_df", weights_dir=VIDEOS.parents[1] / "mesonet" / "weights")
    except Exception as err:  # the comparison is optional
        print(f"(no Meso4_DF scores: {err})")
        return None


def accuracy_table(videos, detectors, samplers, n_frames):
    print(f"\n== agreement with the exact path (uniform + mtcnn) over {len(videos)} DFDC videos ==")
    configs = [(s, d) for s in samplers for d in detectors]
    results = {c: {} for c in configs}
    meso = _meso_scorer()
    video_scores = {c: {} for c in configs}
    for v in videos:
        print(f"  {v.name}", flush=True)
        for sampler, name in configs:
            cfg = ExtractConfig(n_frames=n_frames, sampler=sampler)
            try:
                vf = extract_faces(v, get_detector(name), cfg)
            except ValueError as err:
                print(f"  {v.name} {sampler}/{name}: {err}")
                results[(sampler, name)][v.name] = {}
                continue
            tr = vf.tracks[0]
            if meso is not None:
                import numpy as np

                video_scores[(sampler, name)][v.name] = float(np.mean(meso(np.stack(tr.faces))))
            results[(sampler, name)][v.name] = {
                fi: (box, _crop_square(box, c, kp))
                for fi, box, c, kp in zip(tr.frame_indices, tr.boxes, tr.confidences,
                                          tr.keypoints)}
    ref = results[("uniform", "mtcnn")]
    print(f"{'sampler':9s} {'detector':11s} {'ref frames found':>17s} {'box IoU mean':>13s} "
          f"{'box IoU p5':>11s} {'box IoU<0.5':>12s} {'crop IoU mean':>14s} {'crop IoU p5':>12s}"
          f" {'|dP(fake)| mean/max':>20s}")
    for sampler, name in configs:
        found = total = low = 0
        ious, crop_ious = [], []
        for v in videos:
            rboxes, boxes = ref.get(v.name, {}), results[(sampler, name)].get(v.name, {})
            for fi, rb in rboxes.items():
                total += 1
                # the keyframe sampler picks frames within +-2 of the uniform targets
                near = [k for k in boxes if abs(k - fi) <= 2]
                if not near:
                    continue
                found += 1
                k = min(near, key=lambda k: abs(k - fi))
                iou = box_iou(rb[0], boxes[k][0])
                ious.append(iou)
                crop_ious.append(box_iou(rb[1], boxes[k][1]))
                low += iou < 0.5
        (m1, p1), (m2, p2) = _stats(ious), _stats(crop_ious)
        ref_s, got = video_scores[("uniform", "mtcnn")], video_scores[(sampler, name)]
        d = [abs(got[k] - ref_s[k]) for k in ref_s if k in got]
        dtxt = f"{statistics.fmean(d):.3f}/{max(d):.3f}" if d else "n/a"
        print(f"{sampler:9s} {name:11s} {found:>8d}/{total:<8d} {m1:13.3f} {p1:11.3f} "
              f"{low:12d} {m2:14.3f} {p2:12.3f} {dtxt:>20s}", flush=True)
    print("(keyframe frames are matched to the reference frame within +-2 frame indices; "
          "|dP(fake)|: Meso4_DF video score (mean over the crops) vs the exact path)")
    if video_scores[("uniform", "mtcnn")]:
        print("per-video Meso4_DF P(fake): " + "; ".join(
            f"{v}: " + " ".join(f"{video_scores[c].get(v, float('nan')):.3f}" for c in configs)
            for v in sorted(video_scores[("uniform", "mtcnn")])))
        print("  (columns: " + ", ".join(f"{a}/{b}" for a, b in configs) + ")")


def _stats(values):
    if not values:
        return float("nan"), float("nan")
    values = sorted(values)
    return statistics.fmean(values), values[int(0.05 * len(values))]


def _shard_bytes(out):
    from dfd import schema

    return [f.read_bytes() for f in schema.resolve_shards(out)]


def _cpu_seconds() -> float:
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _copies(videos_dir, copies, root):
    """``real/`` + ``fake/`` folders of symlinks: each DFDC video ``copies`` times (new ids)."""
    import json

    labels = json.loads((videos_dir / "metadata.json").read_text())
    for sub in ("real", "fake"):
        (root / sub).mkdir(parents=True)
    for name, meta in labels.items():
        for c in range(copies):
            link = root / meta["label"].lower() / f"c{c}_{name}"
            link.symlink_to(videos_dir / name)
    return root


def engines_table(videos_dir, n_frames, workers, engines, copies=1):
    """videos/s of whole ``dfd prep`` runs, one per engine, on the same videos."""
    import tempfile

    from data_prep.faces import get_detector
    from data_prep.prep import PrepConfig, run_prep

    n = len(list(videos_dir.glob("*.mp4"))) * copies
    src = tempfile.mkdtemp(prefix="prep-bench-")
    videos_dir = _copies(videos_dir, copies, Path(src)) if copies > 1 else videos_dir
    print(f"\n== dfd prep over {n} DFDC videos ({copies} x each), {n_frames} frames, retinaface, "
          f"{os.cpu_count()} CPUs (shared; load average {os.getloadavg()[0]:.1f}) ==")
    print("(wall seconds of the whole run: start-up of the pool / cluster and detector loads "
          "included; cpu s/video: CPU seconds of this process and its finished child processes "
          "per video, which other jobs on the machine disturb less)")
    print(f"{'engine':24s} {'wall s':>8s} {'videos/s':>9s} {'cpu s/video':>12s} {'faces':>6s} "
          f"{'identical':>10s}")
    runs = [("1 process", "process", 1)]
    if "process" in engines:
        runs.append((f"process pool, {workers}", "process", workers))
    if "dask" in engines:
        runs.append((f"dask local, {workers}", "dask", workers))
    first = None
    per_video = None
    with tempfile.TemporaryDirectory() as tmp:
        for label, engine, w in runs:
            out = Path(tmp) / label.replace(" ", "_").replace(",", "")
            cfg = PrepConfig(sources=[str(videos_dir)], out_dir=str(out), engine=engine,
                             workers=w, n_frames=n_frames, shard_records=4)
            t, cpu = time.perf_counter(), _cpu_seconds()
            res = run_prep(cfg)
            wall, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
            got = _shard_bytes(out)
            first = got if first is None else first
            per_video = wall / n if per_video is None else per_video
            print(f"{label:24s} {wall:8.1f} {n / wall:9.3f} {cpu / n:12.2f} {res.faces:6d} "
                  f"{'yes' if got == first else 'NO':>10s}", flush=True)
    import shutil

    shutil.rmtree(src, ignore_errors=True)
    for name in ("retinaface", "mtcnn"):
        get_detector(name)  # warm the imports, then time fresh builds
        builds = []
        for _ in range(3):
            t = time.perf_counter()
            type(get_detector(name))()
            builds.append(time.perf_counter() - t)
        build = statistics.median(builds)
        print(f"face detector build ({name}, median of 3, imports warm): {build:.3f} s; once "
              f"per worker: {build * workers:.2f} s per run; per task it would add {build:.3f} s "
              f"to each video ({100 * build / per_video:.1f}% of the 1-process "
              f"{per_video:.2f} s/video)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--clip", default="knqhpwoigk.mp4", help="1080p DFDC clip for the timings")
    ap.add_argument("--detectors", default="retinaface,mtcnn")
    ap.add_argument("--samplers", default="keyframe,uniform")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--engines", default="process,dask",
                    help="engines compared with one process ('' to skip): process, dask")
    ap.add_argument("--workers", type=int, default=2, help="workers of the pool and of Dask")
    ap.add_argument("--copies", type=int, default=1,
                    help="run the engines on each DFDC video this many times (start-up cost "
                         "spread over more videos)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not VIDEOS.is_dir():
        print(f"DFDC videos not found at {VIDEOS} (set DFD_SHARED)")
        return 1
    detectors, samplers = args.detectors.split(","), args.samplers.split(",")
    videos = sorted(VIDEOS.glob("*.mp4"))
    clip = VIDEOS / args.clip
    for name in detectors if not (args.skip_timing and args.skip_accuracy) else []:
        # build + warm up (graph tracing, TF import) outside the timings
        run_once(clip, get_detector(name), ExtractConfig(n_frames=2))
    if not args.skip_timing:
        timing_table(clip, detectors, samplers, args.frames, args.repeat)
    if not args.skip_accuracy:
        accuracy_table(videos, detectors, ["uniform", "keyframe"], args.frames)
    if args.engines:
        engines_table(VIDEOS, args.frames, args.workers, args.engines.split(","), args.copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
