"""Evaluation figures, drawn headless (matplotlib Agg) into PNG files.

Every function takes plain arrays, writes one PNG and returns its path:
confusion matrix (counts and row-normalised), ROC curves of several models on one figure
(AUC in the legend), precision-recall curves (AP in the legend) and score histograms by class.
One video's per-frame score timeline is in :mod:`dfd.evaluation.figures`, which needs no
scikit-learn (``dfd detect --plot`` draws it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from dfd.evaluation.figures import FAKE_COLOR, REAL_COLOR, pyplot, save
from dfd.labels import FAKE, REAL, label_name

log = logging.getLogger(__name__)


def _two_classes(y) -> bool:
    return len(np.unique(np.asarray(y))) == 2


def _no_curve(ax) -> None:
    ax.text(0.5, 0.5, "undefined: needs both REAL and FAKE videos", ha="center", va="center",
            transform=ax.transAxes, color="0.3")


def plot_confusion(cm, path, threshold: float, title: str = "Confusion matrix") -> Path:
    """Counts and row-normalised rates side by side; rows true REAL/FAKE, columns predicted."""
    plt = pyplot()
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, mat, fmt, sub in ((axes[0], cm, "{:.0f}", "counts"),
                              (axes[1], norm, "{:.1%}", "row-normalised (recall per class)")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                txt = "n/a" if sub != "counts" and rows[i, 0] == 0 else fmt.format(mat[i, j])
                ax.text(j, i, txt, ha="center", va="center", fontsize=13,
                        color="white" if norm[i, j] > 0.6 else "black")
        names = [label_name(REAL), label_name(FAKE)]  # the order of metrics.confusion_matrix
        ax.set_xticks([0, 1], names)
        ax.set_yticks([0, 1], names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub, fontsize=10)
    fig.suptitle(f"{title} (FAKE when P(fake) \u2265 {threshold:.3g})")
    fig.tight_layout()
    return save(fig, path)


def plot_roc(curves: dict, path, title: str = "ROC curves (video level)") -> Path:
    """``curves`` maps a model name to ``(labels, scores)``; one line each, AUC in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance (AUC 0.500)")
    for name, (y, p) in curves.items():
        if not _two_classes(y):
            log.warning("ROC of %r skipped: needs both classes", name)
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2 if name == "stacker" else 1.5,
                label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    if len(ax.lines) == 1:
        _no_curve(ax)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (REAL called FAKE)",
           ylabel="true positive rate (FAKE caught)", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def plot_pr(curves: dict, path, title: str = "Precision-recall curves (FAKE positive)") -> Path:
    """Precision-recall curves, AP in the legend, the FAKE prevalence as the chance line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    prevalence = None
    for name, (y, p) in curves.items():
        if not _two_classes(y):
            log.warning("PR curve of %r skipped: needs both classes", name)
            continue
        prec, rec, _ = precision_recall_curve(y, p)
        ax.step(rec, prec, where="post", lw=2 if name == "stacker" else 1.5,
                label=f"{name} (AP {average_precision_score(y, p):.3f})")
        prevalence = float(np.mean(y))
    if prevalence is not None:
        ax.axhline(prevalence, ls="--", color="0.6", lw=1, label=f"chance ({prevalence:.3f})")
    else:
        _no_curve(ax)
    ax.set(xlim=(-0.01, 1.01), ylim=(0, 1.02), xlabel="recall (FAKE caught)",
           ylabel="precision (of videos called FAKE)", title=title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    return save(fig, path)


def plot_hist(y, p, path, threshold: float, title: str = "Scores by class") -> Path:
    """Histograms of P(fake) for REAL and FAKE videos with the threshold marked."""
    plt = pyplot()
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    bins = np.linspace(0, 1, 26)
    for lab, color in ((REAL, REAL_COLOR), (FAKE, FAKE_COLOR)):
        sel, name = p[y == lab], label_name(lab)
        ax.hist(sel, bins=bins, alpha=0.55, color=color, label=f"{name} (n={len(sel)})")
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set(xlim=(0, 1), xlabel="P(fake)", ylabel="videos", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save(fig, path)
