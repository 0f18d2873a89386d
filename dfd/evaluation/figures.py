"""Headless matplotlib (Agg) figures written to PNG, and the one figure of a single video:
its per-frame P(fake) timeline (``dfd detect --plot``, ``dfd evaluate``'s report). The
evaluation figures that need scikit-learn's curves are in :mod:`dfd.evaluation.plots`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfd.labels import verdict

REAL_COLOR, FAKE_COLOR = "#1f77b4", "#d62728"


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use: matplotlib
    takes a second to import and most commands draw nothing)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path) -> Path:
    """Write ``fig`` to the PNG ``path`` (its folder made) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def plot_timeline(frame_index, p, path, threshold: float, video_id: str, label: str = "",
                  video_score: float | None = None, track=None) -> Path:
    """One video's per-frame P(fake) over time (one line per face track), threshold dashed."""
    plt = pyplot()
    frame_index, p = np.asarray(frame_index), np.asarray(p, dtype=float)
    track = np.zeros(len(p), int) if track is None else np.asarray(track)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for t in np.unique(track):
        sel = track == t
        order = np.argsort(frame_index[sel])
        ax.plot(frame_index[sel][order], p[sel][order], marker="o", ms=3, lw=1.2,
                label=f"track {t}" if len(np.unique(track)) > 1 else "face score")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if video_score is not None and np.isfinite(video_score):
        ax.axhline(video_score, color=FAKE_COLOR, ls=":", lw=1.2, label=f"video score {video_score:.3f}")
    ax.set(ylim=(-0.02, 1.02), xlabel="frame index", ylabel="P(fake)")
    called = ""
    if video_score is not None and np.isfinite(video_score):
        called = f", called {verdict(video_score, threshold)}"
    ax.set_title(f"Per-frame scores of {video_id}" + (f" (true {label}{called})" if label else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return save(fig, path)
