"""Peak memory of ``dfd detect`` by input resolution: 720p, 4K and 8K clips of a real face.

Each measurement runs in a fresh subprocess (``resource.getrusage`` max RSS), for today's
path and the previous one (frames held at full size). The clips (scikit-image's astronaut
scaled into the frame, made here, in a temporary folder) have ``--frames`` frames. Usage::

    .venv/bin/python bench/memory.py [--frames 40] [--sample 32] [--sizes 720p,4k,8k]
        [--extract-only]

``--extract-only`` measures the face path alone (no model: a smaller process, the same
frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160), "8k": (7680, 4320)}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from data_prep.extract import ExtractConfig
cfg = ExtractConfig() if {new!r} else ExtractConfig.previous_path(max_pixels=None)
t = time.perf_counter()
if {extract_only!r}:
    from data_prep.extract import extract_faces
    vf = extract_faces({video!r}, "default", ExtractConfig(**{{**cfg.__dict__, "n_frames": {sample!r}}}))
    out = {{"status": "ok", "n_faces": len(vf.tracks[0].faces), "box": vf.tracks[0].boxes[0]}}
else:
    import dataclasses
    from dfd_app.detect import pipeline
    ctx = pipeline.build_context(n_frames={sample!r})
    ctx = dataclasses.replace(ctx, extract_cfg=dataclasses.replace(cfg, margin=ctx.extract_cfg.margin,
                                                                   n_frames={sample!r}))
    rec = pipeline.detect_video({video!r}, ctx)
    out = {{"status": rec["status"], "n_faces": rec["n_faces"], "p_fake": rec["p_fake"]}}
out["seconds"] = time.perf_counter() - t
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def peak_rss(video: Path, new: bool = True, extract_only: bool = False, sample: int = 8) -> dict:
    """Run one detection of ``video`` (``sample`` frames) in a fresh interpreter; its peak RSS
    (MB) and result."""
    code = CHILD.format(repo=str(REPO), new=new, extract_only=extract_only, video=str(video),
                        sample=sample)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if res.returncode:
        raise RuntimeError(f"measuring {video} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """Write the clip in a subprocess: this process stays small, and a child's max RSS starts
    from its parent's (Linux keeps the high-water mark across fork and exec)."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.face_clips import "
            f"face_clip; face_clip({str(path)!r}, {width}, {height}, n={frames})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=900)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames in each clip")
    ap.add_argument("--sample", type=int, default=32, help="frames sampled (dfd detect's 32)")
    ap.add_argument("--sizes", default="720p,4k,8k")
    ap.add_argument("--extract-only", action="store_true")
    args = ap.parse_args()

    sizes = args.sizes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name in sizes:
            w, h = SIZES[name]
            t = time.perf_counter()
            clip = make_clip(Path(tmp) / f"{name}.mp4", w, h, args.frames)
            made = time.perf_counter() - t
            rows[name] = {"file_kb": clip.stat().st_size / 1024, "made_s": made,
                          "new": peak_rss(clip, True, args.extract_only, args.sample),
                          "previous": peak_rss(clip, False, args.extract_only, args.sample)}
    what = "face path only" if args.extract_only else "dfd detect (model + faces)"
    print(f"peak RSS, {what}, {args.frames}-frame clips, {args.sample} frames sampled; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    base = rows[sizes[0]]["new"]["maxrss_mb"]
    for name in sizes:
        r = rows[name]
        print(f"{name:6s} {r['file_kb']:7.0f} KB  now {r['new']['maxrss_mb']:7.0f} MB "
              f"({r['new']['maxrss_mb'] / base:.2f}x {sizes[0]}, {r['new']['seconds']:.1f} s, "
              f"{r['new']['status']})   previous {r['previous']['maxrss_mb']:7.0f} MB "
              f"({r['previous']['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
