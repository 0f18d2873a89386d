"""``dfd prep``: videos / face-crop sets -> face-tensor TFRecord shards."""

from __future__ import annotations

import argparse
import logging

from data_prep.contact_sheet import contact_sheet
from data_prep.prep import PrepConfig, run_prep
from data_prep.sampling import SAMPLER_MODES
from dfd_app.cli.common import add_no_progress, add_out, check_dir_out

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:

    d = PrepConfig()
    p.add_argument("sources", nargs="+",
                   help="DFDC folders, FF++ root, real/+fake/ folder, a path,label CSV, or a crop set")
    add_out(p, "output shard directory (re-run to resume)")
    p.add_argument("--layout", default=d.layout,
                   help="input layout (auto, dfdc, ffpp, csv, folders, crops); default: auto-detect")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="worker processes for videos (default 0 = one per CPU core)")
    p.add_argument("--engine", choices=("process", "dask"), default=None,
                   help=f"{d.engine} (default; dask with --scheduler): this machine's process "
                        "pool; dask: a local Dask cluster of --workers processes, or "
                        "--scheduler's cluster (needs dfd-tf[scale])")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --engine dask: an existing cluster (tcp://host:8786 or a "
                        "scheduler file); see docs/prep.md")
    p.add_argument("--frames", type=int, default=d.n_frames,
                   help="frames sampled per video (default: %(default)s)")
    p.add_argument("--sampler", default=d.sampler,
                   help="uniform (exact, evenly spaced), keyframe (fast, codec-aware) or stride")
    p.add_argument("--stride", type=int, default=None, help="frame step for --sampler stride")
    p.add_argument("--detector", default=d.detector, help="face detector (default, mtcnn, ...)")
    p.add_argument("--detect-side", type=int, default=d.detect_side,
                   help="frames are downscaled to this long side for face search")
    p.add_argument("--margin", type=float, default=d.margin,
                   help="face crop framing for videos: crop side / face scale (default: "
                        "%(default)s, MesoNet's alignment; DFDC's given crops are 1.06)")
    p.add_argument("--crop-margin", type=float, default=None,
                   help="framing of a face-crop set's images, recorded in index.json so trained "
                        "models know it (dfdc_faces: 1.06, measured)")
    p.add_argument("--crop-landmarks", choices=("real", "all", "none"), default=d.crop_landmarks,
                   help="crop sets: run the face detector on these crops for the landmarks that "
                        "self-blended fakes use (default: %(default)s)")
    p.add_argument("--all-faces", action="store_true",
                   help="keep every face, grouped into per-person tracks (default: largest face)")
    p.add_argument("--shard-records", type=int, default=d.shard_records,
                   help="videos per shard")
    p.add_argument("--retry-failures", action="store_true",
                   help="retry items listed in failures.csv by an earlier run")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (smoke runs)")
    p.add_argument("--contact-sheet", metavar="PNG",
                   help="also write a contact sheet of the faces to this PNG")
    add_no_progress(p)


def check_options(args: argparse.Namespace) -> None:
    """Options checked before anything is written: a bad one is one error naming the flag and
    its value, not a half-made output folder whose items all wait (or all fail) for it."""
    for flag, value, least in (("--frames", args.frames, 1), ("--shard-records", args.shard_records, 1),
                               ("--workers", args.workers, 0), ("--detect-side", args.detect_side, 0),
                               ("--limit", args.limit, 1), ("--stride", args.stride, 1)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.sampler not in SAMPLER_MODES:
        raise ValueError(f"--sampler must be one of {', '.join(SAMPLER_MODES)}, got {args.sampler!r}")
    if args.sampler == "stride" and args.stride is None:
        raise ValueError("--sampler stride needs --stride N (the frame step)")
    if not args.margin > 0:
        raise ValueError(f"--margin must be > 0, got {args.margin}")
    check_dir_out(args.out, "--out")


def run(args: argparse.Namespace) -> int:

    check_options(args)
    cfg = PrepConfig(
        sources=list(args.sources), out_dir=args.out, layout=args.layout, workers=args.workers,
        engine=args.engine or ("dask" if args.scheduler else "process"),
        scheduler=args.scheduler,
        n_frames=args.frames, sampler=args.sampler, stride=args.stride, detector=args.detector,
        detect_side=args.detect_side, all_faces=args.all_faces, margin=args.margin,
        crop_margin=args.crop_margin, shard_records=args.shard_records, retry_failures=args.retry_failures, limit=args.limit,
        crop_landmarks=args.crop_landmarks,
    )
    res = run_prep(cfg)
    print(f"{res.written} items written ({res.faces} faces), {res.failed} failed, "
          f"{res.skipped} skipped (already done) -> {res.out_dir}")
    if res.failed:
        print(f"failures with reasons: {res.out_dir / 'failures.csv'}")
    if args.contact_sheet and (res.written or res.skipped):

        print(f"contact sheet: {contact_sheet(res.out_dir, args.contact_sheet)}")
    return 0
