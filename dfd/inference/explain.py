"""Where a frame model looked: Grad-CAM heat maps of P(fake) on each scored face.

Method: Grad-CAM (Selvaraju et al., 2017). For the *target layer*'s feature maps ``A_k``
(``h x w x K``) and the model's P(fake) ``y``: ``alpha_k = mean_ij dy/dA_k[i, j]``,
``map = ReLU(sum_k alpha_k A_k)``, upsampled (bilinear) to the face and normalised to sum 1
over it. The map shows where evidence *for FAKE* sits (regions that raise P(fake)); a face
with none (everything lowers P(fake), or a saturated output whose gradient vanishes) gets a
uniform map and ``evidence: false``.

Why Grad-CAM: it needs one forward and one backward pass per batch (Integrated Gradients
needs ~50, occlusion one pass per patch), works for any convolutional Keras model without
changing it, and is class-discriminative at the resolution of the last conv layer, which is
the resolution the decision is made at, and its maps are smooth enough to read on a
thumbnail. Measured by ``bench/explain_pointing.py`` (a pointing game with a known
manipulated square, docs/benchmarks.md): its peak falls in the square for 0.60 of held-out
FAKEs (chance 0.06) and for 0.005 once the model is untrained, as a faithful map should;
gradient x input points there more often (0.96) but still 0.11 for the untrained model (it
partly shows the input's contrast, not the decision: the sanity check of Adebayo et al., 2018).

The target layer, by rule (:func:`target_layer`): the *last* layer of the model, in graph
order, whose output is a 4-D ``(batch, h, w, channels)`` map with ``h, w > 1``: the last
conv block of a MesoNet (``block4_pool``, 8x8 at 256 px), ``top_activation`` of a
``keras.applications`` EfficientNet, ``conv5_block3_out`` of a ResNet, or a nested
``keras.applications`` backbone as a whole (its output is its last conv map). Name another
one with ``layer=``.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: side of the coarse map written to JSON (cells of the face, row-major, summing to 1)
GRID = 8


def _spatial(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # not called in this graph, or several outputs
        return False
    return len(shape) == 4 and all(s is None or s > 1 for s in shape[1:3])


def target_layer(model, name: str | None = None):
    """The layer whose feature maps Grad-CAM weighs (the rule in the module docstring)."""
    if name is not None:
        return model.get_layer(name)
    for layer in reversed(model.layers):
        if type(layer).__name__ == "InputLayer":
            continue
        if _spatial(layer):
            return layer
    raise ValueError(f"model {model.name!r} has no layer with a spatial (batch, h, w, channels) "
                     "output after its input: Grad-CAM needs a convolutional model")


class GradCAM:
    """Grad-CAM of a Keras frame model (uint8 faces ``[N, H, W, 3]`` -> P(fake) ``[N, 1]``).

    ``explainer(faces) -> float32 [N, H, W]``: non-negative maps, each summing to 1 over its
    face; :attr:`evidence` tells, per face of the last call, whether any region raised P(fake).
    Calls are serialised (the target layer is observed through its ``call``).
    """

    def __init__(self, model, layer: str | None = None, batch_size: int = 32):
        if len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; Grad-CAM "
                             "here explains frame models (one face input)")
        self.model, self.layer = model, target_layer(model, layer)
        self.batch_size = int(batch_size)
        self.evidence = np.zeros(0, bool)
        self._lock = threading.Lock()

    def _batch(self, faces: np.ndarray):
        import tensorflow as tf

        seen = []
        original = self.layer.call

        def observed(*args, **kwargs):
            out = original(*args, **kwargs)
            seen.append(out)
            return out

        x = tf.convert_to_tensor(faces, tf.float32)
        self.layer.call = observed
        try:
            with tf.GradientTape() as tape:
                y = self.model(x, training=False)
                y = tf.reshape(tf.cast(y, tf.float32), [tf.shape(x)[0], -1])[:, 0]
                if not seen:
                    raise RuntimeError(f"layer {self.layer.name!r} did not run in the model call")
                feats = seen[-1]
            grads = tape.gradient(y, feats)
        finally:
            del self.layer.call  # back to the class's method
        feats = tf.cast(feats, tf.float32)
        grads = tf.zeros_like(feats) if grads is None else tf.cast(grads, tf.float32)
        alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(alpha * feats, axis=-1))[..., None]
        cam = tf.image.resize(cam, tf.shape(x)[1:3], method="bilinear")[..., 0]
        return np.maximum(np.nan_to_num(cam.numpy().astype(np.float32)), 0.0)

    def __call__(self, faces) -> np.ndarray:
        a = np.asarray(faces)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"faces must be [N, H, W, 3] RGB, got shape {np.shape(faces)}")
        if len(a) == 0:
            self.evidence = np.zeros(0, bool)
            return np.zeros((0, *a.shape[1:3]), np.float32)
        with self._lock:
            maps = np.concatenate([self._batch(a[i:i + self.batch_size])
                                   for i in range(0, len(a), self.batch_size)])
        total = maps.reshape(len(maps), -1).sum(axis=1)
        self.evidence = total > 0
        uniform = np.full(maps.shape[1:], 1.0 / np.prod(maps.shape[1:]), np.float32)
        out = np.where(self.evidence[:, None, None], maps / np.where(total > 0, total, 1.0)[:, None, None],
                       uniform[None])
        return out.astype(np.float32)


def summarize(heat: np.ndarray, grid: int = GRID, evidence: bool = True) -> dict:
    """Where one face's map points: ``peak`` (x, y as fractions of the face's width/height,
    the hottest pixel; None without evidence), ``grid`` (``grid x grid`` cell masses, summing to 1,
    3 decimals) and ``evidence`` (False: uniform map, nothing raised P(fake))."""
    h, w = heat.shape
    ys = np.linspace(0, h, grid + 1).round().astype(int)
    xs = np.linspace(0, w, grid + 1).round().astype(int)
    cells = np.array([[heat[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].sum() for j in range(grid)]
                      for i in range(grid)], np.float64)
    cells = cells / cells.sum() if cells.sum() > 0 else np.full((grid, grid), 1.0 / grid**2)
    peak = None
    if evidence:
        i, j = np.unravel_index(int(np.argmax(heat)), heat.shape)
        peak = [round((j + 0.5) / w, 4), round((i + 0.5) / h, 4)]
    return {"peak": peak, "grid": np.round(cells, 3).tolist(), "evidence": bool(evidence)}


def overlay(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The face (uint8 RGB) with its heat map blended on top (JET colours, map scaled to its
    own maximum), uint8 RGB of the face's size."""
    face = np.asarray(face, np.uint8)
    peak = float(heat.max())
    scaled = (heat / peak if peak > 0 else np.zeros_like(heat)) * 255.0
    if scaled.shape != face.shape[:2]:
        scaled = cv2.resize(scaled, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap(np.clip(scaled, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return np.clip((1 - alpha) * face + alpha * color, 0, 255).astype(np.uint8)
