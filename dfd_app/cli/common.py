"""Argument helpers shared by several ``dfd`` commands (no command of its own)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dfd.evaluation.metrics import DEFAULT_CLIP, MISSING_POLICIES, THRESHOLD_POLICIES


def model_spec(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path or ":" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (NAME without ':'), got {text!r}")
    return name, Path(path)


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


