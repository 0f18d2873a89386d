"""``dfd evaluate``: a video score table (+ labels, + validation scores) -> one report directory.

    dfd evaluate --scores test_videos.csv [--labels labels.csv] [--frames test_frames.csv]
                 [--val val_videos.csv --threshold-policy f1] --out runs/report
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from dfd.scores import read_table
from dfd_eval import report
from dfd_eval.metrics import (
    DEFAULT_CLIP,
    MISSING_POLICIES,
    THRESHOLD_POLICIES,
    apply_labels,
    evaluate,
    prepare,
)

log = logging.getLogger(__name__)


def read_labels(path) -> pd.DataFrame | None:
    """A labels CSV (``video_id,label``; DFDC's ``metadata``-style FAKE/REAL accepted)."""
    if path is None:
        return None
    df = pd.read_csv(path, dtype={"video_id": str})
    if not {"video_id", "label"} <= set(df.columns):
        raise ValueError(f"labels file {path} needs columns video_id,label; has {list(df.columns)}")
    return df


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``dfd evaluate`` and ``dfd compare``."""
    p.add_argument("--labels", type=Path, help="CSV video_id,label filling/overriding unknown labels")
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES, default="fixed",
                   help="fixed (--threshold), f1 (max F1) or youden (max TPR-FPR); "
                        "f1/youden are chosen on --val and applied unchanged to the test scores")
    p.add_argument("--threshold", type=float, default=0.5, help="threshold of the fixed policy (0.5)")
    p.add_argument("--missing", choices=sorted(MISSING_POLICIES), default="exclude",
                   help="videos without a score (no_face/error): exclude (default), or score them "
                        "as_real=0, as_fake=1, as_half=0.5")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of videos for 95%% CIs (0: none; default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-loss-clip", type=float, default=DEFAULT_CLIP, metavar="EPS",
                   help="clip scores to [EPS, 1-EPS] for log loss (default 1e-15)")
    p.add_argument("--out", type=Path, required=True, help="report directory")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", type=Path, required=True, help="video score table (.csv/.parquet)")
    p.add_argument("--frames", type=Path, help="frame score table: frame-level metrics and timelines")
    p.add_argument("--val", type=Path, help="validation video score table for the threshold policy")
    p.add_argument("--timelines", type=int, default=2, metavar="K",
                   help="per-frame timelines of the K most confidently wrong videos (needs --frames)")
    p.add_argument("--title", default=None, help="report title")
    add_common_arguments(p)


def print_summary(name: str, res: dict) -> None:
    v, t = res["video"], res["threshold"]
    keys = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
            "average_precision", "log_loss", "eer")
    print(f"{name}: n={v['n']} threshold={t['value']:.4g} ({t['policy']})")
    for k in keys:
        val = v.get(k)
        ci = v.get("ci", {}).get(k, {})
        span = f"  [{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else ""
        why = f"  ({v['undefined'][k]})" if k in v.get("undefined", {}) else ""
        print(f"  {k:<18} {'-' if val is None else f'{val:.4f}'}{span}{why}")


def run(args) -> int:
    labels = read_labels(args.labels)
    videos = apply_labels(read_table(args.scores), labels)
    val = apply_labels(read_table(args.val), labels) if args.val else None
    frames = read_table(args.frames) if args.frames else None
    models = sorted(videos["model"].dropna().astype(str).unique()) if "model" in videos else []
    if len(models) > 1:
        raise SystemExit(f"{args.scores} holds several models {models}: use `dfd compare`")
    name = models[0] if models and models[0] else Path(args.scores).stem
    res = evaluate(videos, frames, val, args.threshold_policy, args.threshold, args.missing,
                   args.bootstrap, args.seed, args.log_loss_clip)
    res["model"], res["inputs"] = name, {"scores": str(args.scores), "val": str(args.val or ""),
                                         "frames": str(args.frames or ""), "labels": str(args.labels or "")}
    used, _ = prepare(videos, args.missing)
    curves = {name: (used["label"].to_numpy(int), used["p_fake"].to_numpy(float))}
    figs = report.render_figures(args.out, curves, name, res, frames, used, args.timelines)
    report.write_report(args.out, res, videos, figs, title=args.title or f"Evaluation: {name}")
    print_summary(name, res)
    print(f"report: {Path(args.out) / report.HTML_FILE}")
    return 0
