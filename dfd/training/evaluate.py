"""Exact validation metrics of a model on a dataset, computed the same way on every path.

``model.fit`` reports Keras' streaming AUC (200 thresholds) during training; the final
``metrics.json`` of every run, and the custom loop's per-epoch validation, use these exact
figures instead (scikit-learn's ROC AUC; accuracy / precision / recall at 0.5).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from sklearn.metrics import roc_auc_score

from dfd.evaluation.metrics import threshold_metrics

_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()



def binary_metrics(y, p, loss: str = "mse", threshold: float = 0.5) -> dict[str, float]:
    """``auc, accuracy, precision, recall, loss, n, n_fake`` of P(fake) scores ``p``.

    The decision metrics are :func:`dfd.evaluation.metrics.threshold_metrics` (the package's
    one definition; here an undefined precision or recall counts 0, as Keras reports it),
    plus the training loss and the exact ROC AUC (NaN with one class)."""
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    if y.size == 0:
        raise ValueError("no examples to compute metrics on (empty validation set?)")
    truth = y > 0.5
    if loss == "mse":
        loss_v = float(np.mean((y - p) ** 2))
    else:
        q = np.clip(p, 1e-7, 1 - 1e-7)
        loss_v = float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q))))
    decided = threshold_metrics(truth.astype(int), p, threshold)
    both = 0 < truth.sum() < truth.size
    return {
        "auc": float(roc_auc_score(truth, p)) if both else math.nan,
        "accuracy": float(decided["accuracy"]),
        "precision": float(decided["precision"] or 0.0),
        "recall": float(decided["recall"] or 0.0),
        "loss": loss_v,
        "n": int(y.size),
        "n_fake": int(truth.sum()),
    }


def _predict_step(model):
    """One traced predict function per model (kept on the model, so it is traced once)."""
    import tensorflow as tf

    step = _STEPS.get(model)
    if step is None:
        @tf.function(reduce_retracing=True)
        def step(x):
            return tf.reshape(tf.cast(model(x, training=False), tf.float32), [-1])

        _STEPS[model] = step
    return step


def predict_labels(model, ds, steps: int | None = None):
    """``(labels, scores)`` numpy arrays of a ``(inputs, label[, weight])`` dataset."""
    step = _predict_step(model)
    ys, ps = [], []
    for i, batch in enumerate(ds):
        if steps is not None and i >= steps:
            break
        ys.append(np.asarray(batch[1]).reshape(-1))
        ps.append(step(batch[0]).numpy())
    if not ys:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(ys), np.concatenate(ps)


def evaluate(model, ds, loss: str = "mse", steps: int | None = None) -> dict[str, float]:
    """:func:`binary_metrics` of ``model`` over ``ds``."""
    y, p = predict_labels(model, ds, steps)
    return binary_metrics(y, p, loss)


