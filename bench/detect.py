"""Benchmark ``dfd detect`` / ``dfd serve`` on one DFDC clip (10 s, 1080p).

Prints seconds per video split into decode / faces (detect + align) / model, and the service's
latency p50/p95 for ``--concurrent`` simultaneous uploads of the clip to a live uvicorn on
127.0.0.1. Usage::

    .venv/bin/python bench/detect.py [--video PATH] [--model PATH|NAME] [--frames 32]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--model", help="model path or weights name (default: the default model)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from dfd_app.detect import pipeline

    video = args.video or pick_video()
    t = time.perf_counter()
    ctx = pipeline.build_context(model=args.model, detector=args.detector, n_frames=args.frames,
                                 details=True)
    pipeline.warm_up(ctx)
    load_s = time.perf_counter() - t
    first = pipeline.detect_video(video, ctx)  # warms the face detector too
    if first["status"] != "ok":
        print(f"warning: {video.name}: {first['status']} {first['error']}")
    runs = [pipeline.detect_video(video, ctx)["timings"] for _ in range(args.repeats)]
    mean = {k: statistics.mean(r.get(k, 0.0) for r in runs)
            for k in ("decode", "detect", "align", "model", "total")}
    meta = first.get("meta") or {}
    print(f"video      {video.name} {meta.get('width')}x{meta.get('height')} "
          f"{meta.get('frame_count')} frames @ {meta.get('fps')} fps; model {ctx.model_name}; "
          f"{args.frames} frames; {os.cpu_count()} CPUs")
    print(f"load       {load_s:.2f} s (model + face detector, once per process)")
    print(f"per video  {mean['total']:.2f} s  = decode {mean['decode']:.2f} + faces "
          f"{mean['detect'] + mean['align']:.2f} (detect {mean['detect']:.2f}, align "
          f"{mean['align']:.2f}) + model {mean['model']:.2f}  (mean of {args.repeats}; "
          f"P(fake) {first['p_fake']:.3f}, {first['n_faces']} faces)")
    lat = sorted(bench_service(ctx, video, args.concurrent, args.rounds, args.workers))
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(f"service    {len(lat)} uploads, {args.concurrent} at once, {args.workers} workers: "
          f"p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
