"""Per-example weights that make REAL and FAKE agree on a face property (``reweight``).

A detector can separate a training set by something that is not a manipulation trace:
on DFDC's crops the FAKE faces are blurrier than the REAL ones, and every model trained
there ranks unseen faces by blur (docs/generalisation.md). Changing the REAL faces' pixels
to hide it teaches the change as a label (``augment.sharpness_match``, measured harmful);
re-weighting changes no pixel. Each example's loss weight is multiplied by

    w_c(b) = min(p_REAL(b), p_FAKE(b)) / p_c(b) / overlap

where ``b`` is the example's bin of log-sharpness (quantile bins of both classes together, as
drawn),
``p_c`` the class's share of its training examples in that bin and ``overlap`` the sum of
the minima. Weighted, both classes have the same sharpness distribution (the overlap), so
sharpness alone predicts nothing (its ROC-AUC goes to 0.5 up to the binning), each class
keeps a mean weight of 1, and no weight exceeds ``1 / overlap``.

The histograms come from one pass over the training faces (:func:`dfd.training.data.
measure_property`); with ``mix`` each source enters with its batch share, half per class,
as the sampler draws them. The figure is :func:`dfd.training.augment.sharpness` (``dfd
audit``'s), measured in the graph on the face as read, before any augmentation; a clip's is
the mean over its valid faces.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dfd.labels import FAKE, REAL
from dfd.training.augment import sharpness

log = logging.getLogger(__name__)

LOW_OVERLAP = 0.5  # below this, most examples are weighted down: warn


def example_property(x, input_kind: str = "frames"):
    """Log-sharpness of each example of a batch: ``x`` uint8 faces ``[N, S, S, 3]``
    (frames) or ``{"faces": [N, T, S, S, 3], "mask": [N, T]}`` (clips: mean over valid
    faces). Returns float32 ``[N]``."""
    import tensorflow as tf

    if input_kind == "frames":
        if isinstance(x, dict):  # with self-blended fakes to come: {"face", "landmarks", ...}
            x = x["face"]
        return tf.math.log1p(sharpness(x))
    faces, mask = x["faces"], tf.cast(x["mask"], tf.float32)
    shape = tf.shape(faces)
    s = tf.reshape(sharpness(tf.reshape(faces, [-1, *faces.shape[2:]])), shape[:2])
    mean = tf.reduce_sum(s * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return tf.math.log1p(mean)


@dataclass
class PropertyWeights:
    """The fitted weights and what they did, saved as ``reweight.json`` in the run dir."""

    property: str
    edges: list[float]  # inner bin edges of the log property (len(bins) - 1)
    real: list[float]  # weight of a REAL example per bin
    fake: list[float]
    overlap: float  # sum over bins of min(p_REAL, p_FAKE)
    ess_real: float  # effective sample size of each class after weighting, as a fraction
    ess_fake: float
    cue_auc: float  # ROC-AUC of the property alone for FAKE, before weighting
    cue_auc_weighted: float  # and after
    examples_real: int
    examples_fake: int

    def to_dict(self) -> dict:
        return asdict(self)

    def weight_of(self, labels, values) -> np.ndarray:
        """The weight of each example (``labels`` 0/1, ``values`` the log property)."""
        b = np.searchsorted(np.asarray(self.edges), np.asarray(values, float), side="right")
        table = np.array([self.real, self.fake])
        return table[np.asarray(labels, int), b]


def fit_weights(labels, values, item_weight=None, bins: int = 20,
                prop: str = "sharpness") -> PropertyWeights:
    """Fit :class:`PropertyWeights` on the training examples' ``labels`` (0/1) and
    ``values`` (log property); ``item_weight``: each example's share in sampling (1 each
    when ``None``)."""
    labels = np.asarray(labels, int)
    values = np.asarray(values, float)
    item_weight = np.ones(len(labels)) if item_weight is None else np.asarray(item_weight, float)
    n_real, n_fake = int((labels == REAL).sum()), int((labels == FAKE).sum())
    if n_real == 0 or n_fake == 0:
        raise ValueError(f"reweight={prop!r} needs REAL and FAKE training examples, got "
                         f"{n_real} REAL and {n_fake} FAKE")
    if int(bins) < 2:
        raise ValueError(f"reweight_bins must be >= 2, got {bins!r}")
    if not np.isfinite(values).all():
        raise ValueError(f"{np.count_nonzero(~np.isfinite(values))} training examples have "
                         f"no finite {prop}")
    # quantile bins of the examples as drawn (each weighted by its share in sampling)
    order = np.argsort(values)
    mass, ranked = np.cumsum(item_weight[order]), values[order]
    edges = np.interp(np.linspace(0, 1, int(bins) + 1)[1:-1] * mass[-1], mass, ranked)
    # each edge moved half-way between the examples around it, so that no example sits on an
    # edge (the graph's figure may differ from this pass's in the last float bit)
    above = np.clip(np.searchsorted(ranked, edges, side="right"), 1, max(1, len(ranked) - 1))
    edges = np.unique((ranked[above - 1] + ranked[above]) / 2) if len(ranked) > 1 else edges
    b = np.searchsorted(edges, values, side="right")
    k = len(edges) + 1
    p = np.zeros((2, k))
    for lab in (REAL, FAKE):
        sel = labels == lab
        p[lab] = np.bincount(b[sel], weights=item_weight[sel], minlength=k)
        p[lab] /= p[lab].sum()
    low = np.minimum(p[REAL], p[FAKE])
    overlap = float(low.sum())
    if overlap <= 0:
        raise ValueError(f"the classes' {prop} distributions do not overlap: no weighting "
                         "can make them agree")
    table = np.divide(low, p, out=np.zeros_like(p), where=p > 0) / overlap
    w = table[labels, b] * item_weight

    def ess(sel):
        return float(w[sel].sum() ** 2 / (w[sel] ** 2).sum() / sel.sum()) if w[sel].any() else 0.0

    fitted = PropertyWeights(
        property=prop, edges=edges.tolist(), real=table[REAL].tolist(),
        fake=table[FAKE].tolist(), overlap=overlap,
        ess_real=ess(labels == REAL), ess_fake=ess(labels == FAKE),
        cue_auc=float(roc_auc_score(labels, values, sample_weight=item_weight)),
        cue_auc_weighted=float(roc_auc_score(labels, values, sample_weight=w)),
        examples_real=n_real, examples_fake=n_fake)
    log.info("reweight by %s: class overlap %.3f, effective sample size REAL %.2f / FAKE %.2f, "
             "the %s cue's ROC-AUC %.3f -> %.3f (%d REAL, %d FAKE examples, %d bins)", prop,
             overlap, fitted.ess_real, fitted.ess_fake, prop, fitted.cue_auc,
             fitted.cue_auc_weighted, n_real, n_fake, k)
    if overlap < LOW_OVERLAP:
        log.warning("the classes' %s distributions overlap by %.2f only: most examples are "
                    "weighted down (effective sample size REAL %.2f, FAKE %.2f)", prop,
                    overlap, fitted.ess_real, fitted.ess_fake)
    return fitted


def apply_weights(ds, fitted: PropertyWeights, input_kind: str = "frames"):
    """Multiply the weight of each ``(x, label, weight)`` of an unbatched dataset by its
    class-and-bin weight (the property measured on ``x`` as it arrives; worked out on runs
    of 64 examples, order kept)."""
    import tensorflow as tf

    edges = tf.constant(fitted.edges, tf.float32)
    table = tf.constant([fitted.real, fitted.fake], tf.float32)

    def reweight(x, y, w):
        v = example_property(x, input_kind)
        b = tf.searchsorted(edges, v, side="right")
        lab = tf.cast(y > 0.5, tf.int32)
        return x, y, w * tf.gather_nd(table, tf.stack([lab, tf.cast(b, tf.int32)], axis=1))

    return ds.batch(64).map(reweight, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
