"""``dfd evaluate``: a video score table (+ labels, + validation scores) -> one report directory.

    dfd evaluate --scores test_videos.csv [--labels labels.csv] [--frame-scores test_frames.csv]
                 [--val val_videos.csv --threshold-policy f1] --out runs/report
    dfd detect videos/ --out detect.csv
    dfd evaluate --scores detect.csv --labels truth.csv --out runs/report   # truth: video,label

``--scores`` may be ``dfd detect``'s CSV: its ``verdict`` is a prediction, so the true labels
must come from ``--labels``, joined by file name (:mod:`dfd.evaluation.inputs`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dfd.evaluation import report
from dfd.evaluation.inputs import load_videos
from dfd.evaluation.metrics import evaluate, prepare
from dfd.scores import read_table
from dfd_app.cli.common import add_common_arguments, add_deprecated_alias

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", type=Path, required=True,
                   help="video score table (.csv/.parquet) or dfd detect's CSV (then --labels)")
    p.add_argument("--frame-scores", type=Path, dest="frame_scores", metavar="TABLE",
                   help="frame score table (dfd predict --frames-out): frame-level metrics and "
                        "timelines")
    add_deprecated_alias(p, "--frames", "--frame-scores", "frame_scores", type=Path)
    p.add_argument("--val", type=Path, help="validation video score table for the threshold policy")
    p.add_argument("--timelines", type=int, default=2, metavar="K",
                   help="per-frame timelines of the K most confidently wrong videos (needs "
                        "--frame-scores)")
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
    videos = load_videos(args.scores, args.labels)
    val = load_videos(args.val, args.labels, "validation") if args.val else None
    frames = read_table(args.frame_scores) if args.frame_scores else None
    models = sorted(videos["model"].dropna().astype(str).unique()) if "model" in videos else []
    if len(models) > 1:
        raise SystemExit(f"{args.scores} holds several models {models}: use `dfd compare`")
    name = models[0] if models and models[0] else Path(args.scores).stem
    res = evaluate(videos, frames, val, args.threshold_policy, args.threshold, args.missing,
                   args.bootstrap, args.seed, args.log_loss_clip)
    res["model"], res["inputs"] = name, {"scores": str(args.scores), "val": str(args.val or ""),
                                         "frames": str(args.frame_scores or ""), "labels": str(args.labels or "")}
    used, _ = prepare(videos, args.missing)
    curves = {name: (used["label"].to_numpy(int), used["p_fake"].to_numpy(float))}
    figs = report.render_figures(args.out, curves, name, res, frames, used, args.timelines)
    report.write_report(args.out, res, videos, figs, title=args.title or f"Evaluation: {name}")
    print_summary(name, res)
    print(f"report: {Path(args.out) / report.HTML_FILE}")
    return 0
