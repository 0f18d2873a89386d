"""Self-blended fakes (SBI; Shiohara and Yamasaki, CVPR 2022): FAKE examples made from REAL faces.

A real face is blended with a slightly altered copy of itself inside a soft face mask. What
the model can learn from such a "fake" is only what every face swap leaves behind — a
blending boundary and a colour / frequency mismatch between the inner face and its
surroundings — not one generator's look. Everything here is TensorFlow graph code on whole
batches (``[B, S, S, 3]`` uint8 faces), usable in a ``tf.data`` map, and seeded with
stateless random ops: the same ``seed`` gives the same images.

How one fake is built from a face, its five landmarks and its face box (:mod:`dfd.schema`'s
``landmarks`` / ``crop_box``, [0, 1] crop coordinates), with :class:`SBIConfig`'s ranges:

* **target** = the face itself, the REAL example of the pair: outside the mask the fake
  equals it exactly. With ``move_target`` it is first moved by its own small shift and
  scale (one bilinear resampling, as the source's), so that both classes are resampled
  once; by default it is not (the published recipe), and the resampled source makes the
  fake's inner face the blurrier in most pairs (98% with no other change), as a face swap's
  warped face usually is. Moving the target lost 0.07 ROC-AUC on DFDC's unseen fakes
  (docs/generalisation.md): that blur is part of what transfers;
* **source** = a copy of the face itself with other colour (per-channel RGB shift, hue / saturation /
  value as one 3x3 colour matrix, brightness / contrast), other sharpness (unsharp mask with a random amount; a
  negative amount blurs) or, with probability ``downscale_prob``, lower resolution (shrunk
  by a factor of ``downscale_factors`` and enlarged back), and a small shift and scale of
  its own (``shift``, ``scale``);
* **mask**: a convex face outline derived from the five keypoints — a ten-sided polygon in
  the face's own frame (eye-line axis, eye distance and eye-to-mouth distance) reaching the
  brows above and the jaw and chin below (:data:`FACE_OUTLINE`) — scaled by ``mask_scale``,
  cut to the face box, its boundary moved by a smooth random field of up to ``deform`` and
  softened over a random ``feather`` width (a smoothstep ramp: the blur). The deformation
  and the soft edge stay inside the face box (the box is inset by ``deform``). Keypoints and
  box move with the target;
* **blend**: ``fake = target + r * mask * (source - target)`` with ``r`` drawn from
  ``blend_ratios``; labelled FAKE (1).

Faces without landmarks (the absent marker, all ``-1``) get keypoints of a standard upright
face placed in their face box (:data:`STANDARD_KEYPOINTS`); without a face box either, the
box is :data:`DEFAULT_BOX` (the middle of an aligned crop), so their mask is a face-shaped
outline inside that box.

Training wiring (``TrainConfig.fakes``, see :func:`apply_sbi`): ``"sbi"`` keeps the REAL
faces only and emits each (its target) with its self-blended fake (paired batches: the two
side by side); ``"both"`` replaces a ``sbi_ratio`` share of the FAKE examples of each batch
with self-blended fakes of the batch's REAL faces (and, with ``move_target``, every REAL
face of the batch with a moved copy of itself).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from dfd.labels import FAKE, REAL
from dfd.training.config import SBIConfig

# the face outline in the face frame: x in eye distances along the eye line (from the eye
# midpoint), y in eye-to-mouth distances across it (down positive); convex, in order
FACE_OUTLINE = np.array([
    (-0.55, -0.75), (0.55, -0.75), (1.0, -0.35), (1.1, 0.45), (0.85, 1.25),
    (0.35, 1.7), (-0.35, 1.7), (-0.85, 1.25), (-1.1, 0.45), (-1.0, -0.35),
], np.float32)
# the outline's centre (scaled about it by mask_scale)
OUTLINE_CENTRE = (0.0, 0.5)
# the five keypoints of an upright face in its face box ([0, 1] box coordinates)
STANDARD_KEYPOINTS = np.array([
    (0.32, 0.40), (0.68, 0.40), (0.50, 0.58), (0.36, 0.76), (0.64, 0.76)], np.float32)
# the face box assumed when a crop has neither landmarks nor box ([0, 1] crop coordinates)
DEFAULT_BOX = (0.15, 0.12, 0.85, 0.92)
ABSENT = -1.0


def _sub_seeds(seed, n: int):
    import tensorflow as tf

    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=n))


def _to_uint8(x):
    """Float pixels in [0, 255] (any shape) as uint8, rounded and clipped."""
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _folded(seed):
    """A stateless seed derived from ``seed`` apart from its :func:`_sub_seeds` splits."""
    import tensorflow as tf

    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, 7)


def _uniform(seed, shape, lo, hi):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed, float(lo), float(hi), dtype=tf.float32)


def face_geometry(landmarks, crop_box, size: int):
    """``(keypoints [B,5,2], box [B,4])`` in crop pixels, absent values replaced.

    A missing ``crop_box`` is the whole crop when the face has landmarks, else
    :data:`DEFAULT_BOX`; missing landmarks are :data:`STANDARD_KEYPOINTS` placed in the box.
    """
    import tensorflow as tf

    lm = tf.reshape(tf.cast(landmarks, tf.float32), [-1, 5, 2])
    box = tf.reshape(tf.cast(crop_box, tf.float32), [-1, 4])
    has_lm = tf.reduce_any(tf.not_equal(lm, ABSENT), axis=[1, 2])
    has_box = tf.reduce_any(tf.not_equal(box, ABSENT), axis=1)
    box = tf.where(has_box[:, None], box,
                   tf.where(has_lm[:, None], tf.constant([[0.0, 0.0, 1.0, 1.0]]),
                            tf.constant([DEFAULT_BOX], tf.float32)))
    box = tf.clip_by_value(box, 0.0, 1.0)
    std = (box[:, None, :2] + tf.constant(STANDARD_KEYPOINTS)[None]
           * (box[:, None, 2:] - box[:, None, :2]))
    lm = tf.where(has_lm[:, None, None], lm, std)
    return lm * size, box * size


MASK_GRID = 64  # the mask is computed on at most this many pixels a side, then upsampled


def face_mask(landmarks, crop_box, size: int, seed, cfg: SBIConfig | None = None,
              move=None):
    """The soft blending mask ``float32[B, size, size]`` in [0, 1] (graph function).

    Zero outside the face box (see the module docstring); ``seed`` is a stateless seed
    (``int[2]``); ``move`` ``(scale [B, 1], shift [B, 2])`` from :func:`moved`: the face was
    moved so, and its keypoints and box move with it. The mask is smooth, so it is computed on a grid of at most
    :data:`MASK_GRID` pixels a side and resized bilinearly (the face box is inset by one
    grid cell more, so the upsampled mask stays inside it).
    """
    import tensorflow as tf

    cfg = cfg or SBIConfig()
    grid = min(size, MASK_GRID)
    cell = size / grid  # crop pixels per grid pixel
    kp, box = face_geometry(landmarks, crop_box, size)
    if move is not None:  # output pixel i shows input pixel cen + (i - cen - t) / scale
        scale, t = move
        cen = (size - 1.0) / 2.0
        kp = (kp - cen) * scale[:, :, None] + cen + t[:, None, :]
        corners = tf.reshape(box, [-1, 2, 2])
        box = tf.reshape((corners - cen) * scale[:, :, None] + cen + t[:, None, :], [-1, 4])
        box = tf.clip_by_value(box, 0.0, float(size))
    b = tf.shape(kp)[0]
    s_scale, s_noise, s_feather = _sub_seeds(seed, 3)
    eyes = (kp[:, 0] + kp[:, 1]) / 2
    mouth = (kp[:, 3] + kp[:, 4]) / 2
    eye_vec = kp[:, 1] - kp[:, 0]
    a = tf.maximum(tf.norm(eye_vec, axis=-1), 1.0)  # eye distance
    u = eye_vec / a[:, None]  # along the eye line
    v = tf.stack([-u[:, 1], u[:, 0]], axis=-1)  # across it, towards the mouth
    h = tf.maximum(tf.reduce_sum((mouth - eyes) * v, -1), 0.3 * a)  # eye-to-mouth distance
    outline = tf.constant(FACE_OUTLINE)
    centre = tf.constant(OUTLINE_CENTRE, tf.float32)
    k = _uniform(s_scale, [b, 1, 1], *cfg.mask_scale)
    pts = centre + (outline[None] - centre) * k  # [B, K, 2] face frame
    poly = (eyes[:, None] + pts[..., :1] * (a[:, None, None] * u[:, None])
            + pts[..., 1:] * (h[:, None, None] * v[:, None]))  # [B, K, 2] crop pixels
    # signed distance to the (convex) outline: min over edges, positive inside
    nxt = tf.roll(poly, shift=-1, axis=1)
    edge = nxt - poly
    edge_len = tf.maximum(tf.norm(edge, axis=-1), 1e-6)
    area = tf.reduce_sum(poly[..., 0] * nxt[..., 1] - nxt[..., 0] * poly[..., 1], axis=1)
    orient = tf.where(area >= 0, 1.0, -1.0)[:, None]  # inside is on this side of each edge
    # grid pixel j is centred on crop coordinate (j + 0.5) * cell - 0.5
    coords = (tf.range(grid, dtype=tf.float32) + 0.5) * cell - 0.5
    gy, gx = tf.meshgrid(coords, coords, indexing="ij")
    px = gx[None, :, :, None] - poly[:, None, None, :, 0]  # [B, S, S, K]
    py = gy[None, :, :, None] - poly[:, None, None, :, 1]
    cross = edge[:, None, None, :, 0] * py - edge[:, None, None, :, 1] * px
    d_poly = tf.reduce_min(cross * (orient / edge_len)[:, None, None, :], axis=-1)
    # the face box, inset by the deformation so the deformed mask stays inside it
    amp = float(cfg.deform) * size
    bx = box[:, None, None, :]
    d_box = tf.minimum(tf.minimum(gx[None] - bx[..., 0], bx[..., 2] - gx[None]),
                       tf.minimum(gy[None] - bx[..., 1], bx[..., 3] - gy[None]))
    d_box = d_box - amp - (cell if grid < size else 0.5)
    d = tf.minimum(d_poly, d_box)
    if amp > 0:  # a smooth random field in [-amp, amp] moves the boundary
        coarse = tf.random.stateless_uniform([b, 5, 5, 1], s_noise, -1.0, 1.0)
        d = d + amp * tf.image.resize(coarse, [grid, grid], method="bilinear")[..., 0]
    feather = _uniform(s_feather, [b, 1, 1], *cfg.feather) * size
    t = tf.clip_by_value(d / tf.maximum(feather, 1.0), 0.0, 1.0)
    m = t * t * (3.0 - 2.0 * t)  # smoothstep: zero where d <= 0
    if grid < size:
        m = tf.image.resize(m[..., None], [size, size], method="bilinear")[..., 0]
        m = tf.where(m < 1e-4, 0.0, tf.minimum(m, 1.0))
    return m


def _gaussian_blur(x, sigma: float = 1.2, radius: int = 3):
    """Depthwise Gaussian blur of float images ``[B, H, W, C]`` (reflect padding)."""
    import tensorflow as tf

    g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    g = (g / g.sum()).astype(np.float32)
    c = x.shape[-1]
    kx = tf.constant(np.tile(g[None, :, None, None], (1, 1, c, 1)))
    ky = tf.constant(np.tile(g[:, None, None, None], (1, 1, c, 1)))
    x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def colour_matrix(theta, sat, val):
    """``[B, 3, 3]`` RGB matrices: hue rotation by ``theta`` radians about the grey axis,
    saturation factor ``sat`` (a blend with the luma), value factor ``val``."""
    import tensorflow as tf

    c, s = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
    third = np.full((3, 3), 1.0 / 3.0, np.float32)
    cross = (np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], np.float32) / math.sqrt(3.0))
    hue = c * np.eye(3, dtype=np.float32) + (1.0 - c) * third + s * cross
    luma = np.tile(_LUMA[None], (3, 1))
    satm = sat[:, None, None] * np.eye(3, dtype=np.float32) + (1.0 - sat[:, None, None]) * luma
    return val[:, None, None] * tf.matmul(satm, hue)


def downscaled(x, factors, seed):
    """Float images ``[B, S, S, C]`` with resolution lost: each shrunk by one of ``factors``
    (drawn per image; nearest neighbour) and enlarged back to ``S`` (bilinear)."""
    import tensorflow as tf

    size = x.shape[1]
    versions = tf.stack([
        tf.image.resize(tf.image.resize(x, [max(1, size // f)] * 2, method="nearest"),
                        [size, size], method="bilinear") for f in factors])  # [F, B, S, S, C]
    b = tf.shape(x)[0]
    pick = tf.random.stateless_uniform([b], seed, 0, len(factors), dtype=tf.int32)
    return tf.gather_nd(versions, tf.stack([pick, tf.range(b)], axis=1))


def _clipped(x):
    """Float images clipped to [0, 1] (values outside are flattened onto the bounds)."""
    import tensorflow as tf

    return tf.clip_by_value(x, 0.0, 1.0)


def _squeezed(x):
    """Float images ``[B, H, W, C]`` mapped into [0, 1] without clipping: an image whose
    values leave [0, 1] is moved back by one linear map of its own (its range ``[lo, hi]``
    onto ``[max(lo, 0), min(hi, 1)]``), so the order and the relative size of its values,
    and every value of an image already inside, are kept."""
    import tensorflow as tf

    lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
    new_lo, new_hi = tf.clip_by_value(lo, 0.0, 1.0), tf.clip_by_value(hi, 0.0, 1.0)
    gain = (new_hi - new_lo) / tf.maximum(hi - lo, 1e-6)
    return tf.clip_by_value(new_lo + (x - lo) * gain, 0.0, 1.0)  # the clip: rounding only


def source_copy(faces, seed, cfg: SBIConfig | None = None):
    """The altered source copy of ``faces`` (float32 [B, S, S, 3] in [0, 1])."""
    import tensorflow as tf

    cfg = cfg or SBIConfig()
    x = tf.image.convert_image_dtype(faces, tf.float32)
    b = tf.shape(x)[0]
    ss = _sub_seeds(seed, 9)
    # colour: RGB shift, then hue / saturation / value as one 3x3 matrix per image (a hue
    # rotation about the grey axis, a blend towards the luma, a scale), then contrast /
    # brightness. Linear, so it costs one small matmul instead of an HSV round trip.
    x = x + _uniform(ss[0], [b, 1, 1, 3], -cfg.rgb_shift, cfg.rgb_shift)
    theta = _uniform(ss[1], [b], -cfg.hue, cfg.hue) * (2.0 * math.pi)
    sat = _uniform(ss[2], [b], 1.0 - cfg.saturation, 1.0 + cfg.saturation)
    val = _uniform(ss[3], [b], 1.0 - cfg.value, 1.0 + cfg.value)
    x = tf.einsum("bhwc,bdc->bhwd", x, colour_matrix(theta, sat, val))
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    c = _uniform(ss[4], [b, 1, 1, 1], 1.0 - cfg.contrast, 1.0 + cfg.contrast)
    d = _uniform(ss[5], [b, 1, 1, 1], -cfg.brightness, cfg.brightness)
    into_range = _squeezed if cfg.keep_range else _clipped
    x = into_range((x - mean) * c + mean + d)
    # sharpness: unsharp mask with a random amount (-1: the blurred image), or (with
    # probability downscale_prob) a loss of resolution instead
    amount = _uniform(ss[6], [b, 1, 1, 1], *cfg.sharpness)
    sharpened = into_range(x + amount * (x - _gaussian_blur(x)))
    if cfg.downscale_prob > 0:
        s_use, s_factor = _sub_seeds(ss[6], 2)
        use = _uniform(s_use, [b, 1, 1, 1], 0.0, 1.0) < cfg.downscale_prob
        sharpened = tf.where(use, downscaled(x, cfg.downscale_factors, s_factor), sharpened)
    return moved(sharpened, (ss[7], ss[8]), cfg)[0]


def moved(x, seeds, cfg: SBIConfig | None = None):
    """Float images ``[B, S, S, C]`` shifted by up to ``cfg.shift`` of their side and scaled
    by a factor from ``1 -+ cfg.scale`` about the centre (one bilinear resampling of a
    reflect-padded copy; 3x faster here than a projective transform): ``(images, scale [B, 1],
    shift [B, 2] pixels)``. Output pixel i shows input pixel cen + (i - cen - shift) / scale.
    ``seeds``: two stateless seeds, the scale's and the shift's."""
    import tensorflow as tf

    cfg = cfg or SBIConfig()
    b, size = tf.shape(x)[0], x.shape[1]
    s_scale, s_shift = seeds
    pad = int(math.ceil(size * (cfg.shift + cfg.scale))) + 2
    scale = _uniform(s_scale, [b, 1], 1.0 - cfg.scale, 1.0 + cfg.scale)
    t = _uniform(s_shift, [b, 2], -cfg.shift, cfg.shift) * size  # (tx, ty) pixels
    cen = (size - 1.0) / 2.0
    lo = (pad + cen - (cen + t) / scale) / (size + 2 * pad - 1)
    hi = (pad + cen + (cen - t) / scale) / (size + 2 * pad - 1)
    boxes = tf.stack([lo[:, 1], lo[:, 0], hi[:, 1], hi[:, 0]], axis=1)
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.image.crop_and_resize(padded, boxes, tf.range(b), [size, size]), scale, t


class Blend(NamedTuple):
    """What :func:`self_blend` makes of a batch of real faces."""

    real: object  # uint8 [B, S, S, 3]: each face moved (the target): the REAL example
    fake: object  # uint8 [B, S, S, 3]: its self-blended fake, equal to ``real`` off the mask
    weight: object  # float32 [B, S, S]: the blend weight used (mask times blend ratio)


def self_blend(faces, landmarks, crop_box, seed, cfg: SBIConfig | None = None) -> Blend:
    """Self-blended fakes of a batch of real faces, with the REAL examples they pair with.

    ``faces`` uint8 ``[B, S, S, 3]``; ``landmarks`` ``[B, 5, 2]`` and ``crop_box`` ``[B, 4]``
    in [0, 1] crop coordinates (``-1`` = absent); ``seed`` a stateless seed ``int[2]``.
    The fake equals its ``real`` exactly where ``weight`` is zero; both were resampled once
    (the target's move, the source's own), see the module docstring.
    """
    import tensorflow as tf

    cfg = cfg or SBIConfig()
    faces = tf.convert_to_tensor(faces)
    if faces.dtype != tf.uint8 or faces.shape.rank != 4:
        raise ValueError(f"self_blend expects uint8 faces [B, S, S, 3], got {faces.dtype.name} "
                         f"of rank {faces.shape.rank}")
    size = faces.shape[1]
    if size is None or faces.shape[2] != size:
        raise ValueError(f"self_blend needs square faces of a static size, got {faces.shape}")
    s_src, s_mask, s_ratio = _sub_seeds(seed, 3)
    source = source_copy(faces, s_src, cfg) * 255.0
    target, move = tf.cast(faces, tf.float32), None
    if cfg.move_target:  # its seeds folded from ``seed``: the other draws stay as they were
        target, scale, shift = moved(target, _sub_seeds(_folded(seed), 2), cfg)
        move = (scale, shift)
    mask = face_mask(landmarks, crop_box, size, s_mask, cfg, move=move)
    ratios = tf.constant(cfg.blend_ratios, tf.float32)
    pick = tf.random.stateless_uniform([tf.shape(faces)[0]], s_ratio, 0, len(cfg.blend_ratios),
                                       dtype=tf.int32)
    w = mask * tf.gather(ratios, pick)[:, None, None]
    out = target + w[..., None] * (source - target)

    real = tf.ensure_shape(_to_uint8(target), faces.shape) if cfg.move_target else faces
    return Blend(real, tf.ensure_shape(_to_uint8(out), faces.shape), w)


# ------------------------------------------------------------------ training wiring


def pair_batch(x, y, weight, seed, cfg: SBIConfig | None = None):
    """``fakes="sbi"``: a batch of REAL faces -> each face followed by its self-blended fake.

    ``x`` is ``{"face", "landmarks", "crop_box"}`` of ``B`` faces; returns ``(faces[2B],
    labels[2B], weights[2B])`` ordered real0, fake0, real1, fake1, ...
    """
    import tensorflow as tf

    faces = x["face"]
    blend = self_blend(faces, x["landmarks"], x["crop_box"], seed, cfg)
    b = tf.shape(faces)[0]
    out = tf.reshape(tf.stack([blend.real, blend.fake], axis=1),
                     tf.concat([[2 * b], tf.shape(faces)[1:]], 0))
    labels = tf.reshape(tf.stack([tf.fill([b], float(REAL)), tf.fill([b], float(FAKE))], 1),
                        [2 * b])
    weights = tf.reshape(tf.stack([weight, weight], axis=1), [2 * b])
    return out, labels, weights


def replace_batch(x, y, weight, seed, ratio: float, cfg: SBIConfig | None = None):
    """``fakes="both"``: each FAKE example of the batch is, with probability ``ratio``,
    replaced by a self-blended fake of a random REAL face of the same batch (kept as it is
    when the batch holds no REAL face), and with ``cfg.move_target`` each REAL face by a moved
    copy of itself (so that both classes are resampled once, as in :func:`self_blend`).
    Labels and weights are unchanged."""
    import tensorflow as tf

    cfg = cfg or SBIConfig()
    faces = x["face"]
    b = tf.shape(faces)[0]
    s_pick, s_use, s_blend = _sub_seeds(seed, 3)
    is_real = y < 0.5
    real_idx = tf.cast(tf.where(is_real)[:, 0], tf.int32)
    n_real = tf.shape(real_idx)[0]
    r = tf.random.stateless_uniform([b], s_pick, 0, tf.maximum(n_real, 1), dtype=tf.int32)
    # (a 0 appended so the gather is valid when the batch has no REAL face)
    src = tf.gather(tf.concat([real_idx, [0]], 0), tf.minimum(r, tf.maximum(n_real - 1, 0)))
    src = tf.where(n_real > 0, src, tf.range(b))
    fakes = self_blend(tf.gather(faces, src), tf.gather(x["landmarks"], src),
                       tf.gather(x["crop_box"], src), s_blend, cfg).fake
    use = ((~is_real) & (tf.random.stateless_uniform([b], s_use) < ratio) & (n_real > 0))
    if ratio > 0 and cfg.move_target:  # no self-blend at all: every face stays as it is
        reals = _to_uint8(moved(tf.cast(faces, tf.float32), _sub_seeds(_folded(seed), 2),
                                cfg)[0])
        faces = tf.where(is_real[:, None, None, None], reals, faces)
    return tf.where(use[:, None, None, None], fakes, faces), y, weight


def apply_sbi(ds, fakes: str, ratio: float, batch_size: int, seed: int,
              cfg: SBIConfig | None = None):
    """Add self-blended fakes to an unbatched ``(x, label, weight)`` dataset whose ``x`` is
    ``{"face", "landmarks", "crop_box"}``; returns unbatched ``(face, label, weight)``.

    ``fakes="sbi"`` drops the FAKE examples and pairs every REAL face with its fake;
    ``"both"`` replaces a ``ratio`` share of the FAKE examples (see :func:`replace_batch`).
    Work is done on batches of ``batch_size``; seeds come from ``seed`` and change each
    epoch (``Dataset.random(rerandomize_each_iteration=True)``), deterministic given ``seed``.
    """
    import tensorflow as tf

    from dfd.readers import AUTOTUNE

    cfg = cfg or SBIConfig()
    if fakes not in ("sbi", "both"):
        raise ValueError(f"fakes must be 'sbi' or 'both' here, got {fakes!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sbi ratio must be in [0, 1], got {ratio!r}")
    if fakes == "sbi":
        ds = ds.filter(lambda x, y, w: y < 0.5)
        batch_size = max(1, batch_size // 2)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds.batch(batch_size), seeds))
    if fakes == "sbi":
        def fn(batch, s):
            return pair_batch(*batch, s, cfg)
    else:
        def fn(batch, s):
            return replace_batch(*batch, s, ratio, cfg)
    return ds.map(fn, num_parallel_calls=AUTOTUNE).unbatch()

