"""Benchmark ``dfd detect`` / ``dfd serve`` on DFDC clips (10 s, 1080p), against the decode floor.

Prints, in one run, per video (mean over the clips and repeats, each measurement interleaved
so they share the machine's load): the **decode floor** (the same sampler and frame reduction,
no face work), the **full path** (``detect_video``: decode + faces + model, each face scored as
soon as it is found), the same with the faces **scored after the last frame**
(``score_while_decoding=False``), the same with the face search **not lowered** below the
decoder's priority (``ExtractConfig.face_nice=0``, one clip and a folder), the full path with the model **on Keras** instead of
TensorFlow Lite (``--runtime keras``; with the largest video-score difference between the
two), the **batch**
(``dfd detect`` on the clips as a folder: ``iter_detect`` finds the next clip's faces while it
scores this one's; per clip), the **previous
path** (every sampled frame detected whole, no decode thread:
``ExtractConfig.previous_path()``), their ratios to the floor, wall and CPU seconds, and the
prep cost (CPU seconds of ``extract_faces`` + PNG records per video; also with one decoder
thread and no decode thread, the cheapest setting for a pool of workers). The machine's load is
printed with the figures: on a shared machine compare the ratios. With ``--service``, also
the service's latency p50/p95 for ``--concurrent`` simultaneous uploads to a live uvicorn on
127.0.0.1. Usage::

    .venv/bin/python bench/detect.py [--videos 3] [--video PATH] [--model PATH|NAME]
        [--frames 32] [--repeats 2] [--runtime auto] [--service]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DFDC = Path(os.environ.get("DFD_SHARED", REPO.parent / "shared")) / "data" / "dfdc_videos"


def pick_video() -> Path:
    vids = sorted(DFDC.glob("*.mp4"))
    if not vids:
        sys.exit(f"no DFDC clip under {DFDC}; pass --video")
    return vids[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_service(ctx, video: Path, concurrent: int, rounds: int, workers: int) -> list[float]:
    import httpx
    import uvicorn

    from dfd_app.serve.service import ServiceSettings, create_app

    port = free_port()
    app = create_app(ctx, ServiceSettings(workers=workers, timeout_s=600))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    data, lat, errors = video.read_bytes(), [], []

    def one():
        t = time.perf_counter()
        with httpx.Client(timeout=600) as c:
            r = c.post(f"http://127.0.0.1:{port}/v1/detect",
                       files={"file": (video.name, data, "video/mp4")})
        lat.append(time.perf_counter() - t)
        if r.status_code != 200:
            errors.append(r.status_code)

    try:
        for _ in range(rounds):
            ts = [threading.Thread(target=one) for _ in range(concurrent)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    finally:
        server.should_exit = True
        th.join(10)
    if errors:
        print(f"service errors: {errors}")
    return lat


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def decode_floor(video: Path, cfg) -> None:
    """The sampler alone: every frame the face path gets, reduced and upright, no face work."""
    from data_prep.sampling import iter_frames

    for _ in iter_frames(video, n_frames=cfg.n_frames, mode=cfg.sampler, stride=cfg.stride,
                         max_pixels=cfg.max_pixels, rotate=cfg.rotate):
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, action="append", help="a clip (repeatable)")
    ap.add_argument("--videos", type=int, default=3, help="how many shared DFDC clips")
    ap.add_argument("--model", help="model path or weights name (default: the default model)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runtime", default="auto", help="what runs the model on the full path "
                    "(dfd detect --runtime; the Keras rows are printed beside it)")
    ap.add_argument("--service", action="store_true", help="also time the HTTP service")
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import dataclasses

    from data_prep.extract import extract_faces, to_face_records
    from dfd import onednn_enabled
    from dfd_app.detect import pipeline

    videos = args.video or sorted(DFDC.glob("*.mp4"))[: args.videos]
    if not videos:
        sys.exit(f"no DFDC clip under {DFDC}; pass --video")
    load0 = os.getloadavg()
    t = time.perf_counter()
    ctx = pipeline.build_context(model=args.model, detector=args.detector, n_frames=args.frames,
                                 details=True, runtime=args.runtime)
    pipeline.warm_up(ctx)
    load_s = time.perf_counter() - t
    keras_ctx = pipeline.build_context(model=args.model, detector=args.detector,
                                       n_frames=args.frames, details=True, runtime="keras")
    keras_ctx = dataclasses.replace(keras_ctx, detector=ctx.detector)
    pipeline.warm_up(keras_ctx)
    runtime = getattr(getattr(ctx.scorer, "scorer", None), "runtime", "?")
    cfg = ctx.extract_cfg
    prev_cfg = dataclasses.replace(cfg, detect_every=1, overlap=False)
    prev_ctx = dataclasses.replace(ctx, extract_cfg=prev_cfg)
    late_ctx = dataclasses.replace(ctx, score_while_decoding=False)
    # the face search and the early scorer at the decoder's priority (as before face_nice)
    flat_ctx = dataclasses.replace(ctx, extract_cfg=dataclasses.replace(cfg, face_nice=0))
    first = pipeline.detect_video(videos[0], ctx)  # warms the face detector too
    if first["status"] != "ok":
        print(f"warning: {videos[0].name}: {first['status']} {first['error']}")
    pipeline.detect_video(videos[0], prev_ctx)
    pipeline.detect_video(videos[0], keras_ctx)
    rows: dict[str, list] = {k: [] for k in ("floor", "full", "keras", "late", "batch",
                                             "batch_keras", "batch_late", "previous", "prep",
                                             "prep_prev", "prep_1t", "flat", "batch_flat")}
    score_diff = 0.0
    one_thread = dataclasses.replace(cfg, decode_threads=1, overlap=False)
    parts: list[dict] = []
    for _ in range(args.repeats):
        c = _clock()
        batch = list(pipeline.iter_detect(videos, ctx))
        w, cpu = _since(c)
        rows["batch"] += [(w / len(batch), cpu / len(batch))] * len(batch)
        c = _clock()
        batch = list(pipeline.iter_detect(videos, late_ctx))
        w, cpu = _since(c)
        rows["batch_late"] += [(w / len(batch), cpu / len(batch))] * len(batch)
        c = _clock()
        batch = list(pipeline.iter_detect(videos, keras_ctx))
        w, cpu = _since(c)
        rows["batch_keras"] += [(w / len(batch), cpu / len(batch))] * len(batch)
        c = _clock()
        batch = list(pipeline.iter_detect(videos, flat_ctx))
        w, cpu = _since(c)
        rows["batch_flat"] += [(w / len(batch), cpu / len(batch))] * len(batch)
        for v in videos:
            c = _clock()
            decode_floor(v, cfg)
            rows["floor"].append(_since(c))
            c = _clock()
            rec = pipeline.detect_video(v, ctx)
            rows["full"].append(_since(c))
            parts.append(rec["timings"])
            c = _clock()
            rec_keras = pipeline.detect_video(v, keras_ctx)
            rows["keras"].append(_since(c))
            if rec["status"] == rec_keras["status"] == "ok":
                score_diff = max(score_diff, abs(rec["p_fake"] - rec_keras["p_fake"]))
            c = _clock()
            pipeline.detect_video(v, late_ctx)
            rows["late"].append(_since(c))
            c = _clock()
            pipeline.detect_video(v, flat_ctx)
            rows["flat"].append(_since(c))
            c = _clock()
            pipeline.detect_video(v, prev_ctx)
            rows["previous"].append(_since(c))
            for key, pcfg in (("prep", cfg), ("prep_prev", prev_cfg), ("prep_1t", one_thread)):
                c = _clock()
                to_face_records(extract_faces(v, ctx.detector, pcfg), v.stem, 0)
                rows[key].append(_since(c))
    mean = {k: (statistics.mean(w for w, _ in r), statistics.mean(c for _, c in r))
            for k, r in rows.items()}
    part = {k: statistics.mean(p.get(k, 0.0) for p in parts)
            for k in ("decode", "detect", "align", "model", "total")}
    load1 = os.getloadavg()
    meta = first.get("meta") or {}
    print(f"videos     {len(videos)} clips like {videos[0].name} {meta.get('width')}x"
          f"{meta.get('height')}, {meta.get('frame_count')} frames; model {ctx.model_name} "
          f"(runtime {runtime}); "
          f"{args.frames} frames sampled ({cfg.sampler}); x{args.repeats}")
    print(f"machine    {os.cpu_count()} CPUs, load average {load0[0]:.1f} at start, "
          f"{load1[0]:.1f} at end (a machine at rest: < 0.5); TensorFlow oneDNN kernels "
          f"{onednn_enabled()}")
    print(f"load       {load_s:.2f} s (model + face detector, once per process)")
    fw, fc = mean["floor"]
    for key, label in (("floor", "decode floor"), ("full", f"full path ({runtime})"),
                       ("keras", "full path, model on Keras"),
                       ("late", "faces scored after the last frame"),
                       ("flat", "search not lowered (face_nice 0)"),
                       ("batch", f"batch, per clip ({runtime})"),
                       ("batch_keras", "batch, model on Keras"),
                       ("batch_late", "batch, scored after the last frame"),
                       ("batch_flat", "batch, search not lowered"), ("previous", "previous path")):
        w, cpu = mean[key]
        print(f"{label:34s} {w:5.2f} s wall {cpu:5.2f} s CPU  ratio to floor {w / fw:4.2f} wall, "
              f"{cpu / fc:4.2f} CPU")
    print(f"video scores, {runtime} against Keras: largest difference {score_diff:.2g}")
    print(f"full path split: decode {part['decode']:.2f} + detect {part['detect']:.2f} + align "
          f"{part['align']:.2f} + model {part['model']:.2f} (decode overlaps detect and the model; "
          f"detect includes the time the search yields to the decoder)")
    print(f"prep       {mean['prep'][1]:.2f} CPU-s per video ({mean['prep'][0]:.2f} s wall); "
          f"previous path {mean['prep_prev'][1]:.2f} CPU-s ({mean['prep_prev'][0]:.2f} s wall); "
          f"one decode thread, no overlap {mean['prep_1t'][1]:.2f} CPU-s "
          f"({mean['prep_1t'][0]:.2f} s wall)")
    if args.service:  # every way, alternated twice so that they share the machine's load
        ways = {"faces scored while decoding": ctx, "after the last frame": late_ctx,
                "model on Keras": dataclasses.replace(keras_ctx, detector=ctx.detector)}
        lat: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(2):
            for key, c in ways.items():
                lat[key] += bench_service(c, videos[0], args.concurrent, args.rounds,
                                          args.workers)
        for key, got in lat.items():
            got = sorted(got)
            p95 = got[min(len(got) - 1, round(0.95 * (len(got) - 1)))]
            print(f"service    {len(got)} uploads, {args.concurrent} at once, {args.workers} "
                  f"workers, {key}: p50 {statistics.median(got):.2f} s, p95 {p95:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
