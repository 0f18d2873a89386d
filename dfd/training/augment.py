"""Deepfake-relevant augmentations as graph ops, for use inside ``tf.data`` maps.

All functions take uint8 faces, either one face ``[H, W, 3]`` or one clip ``[T, H, W, 3]``,
and return the same shape and dtype. For a clip every random parameter is drawn ONCE and
applied to every frame, so the motion between frames (what temporal models look at) is
left intact.

* horizontal flip;
* JPEG re-compression at a random quality (fakes are judged after platforms re-encode them);
* brightness / contrast;
* small rotation, zoom and shift, one projective transform (``ImageProjectiveTransformV3``):
  zoom and shift re-frame the crop, so that faces framed by another source or by the
  detector at detection time are in distribution (``zoom``, ``shift``);
* robustness to what the internet does to video (off by default): down-then-up scaling
  (``rescale_prob``), Gaussian blur (``blur_prob``) and an H.264 re-encode at a random CRF
  through PyAV (``codec_prob``; :func:`h264` / :func:`apply_codec`, run on whole batches:
  a batch of faces is encoded as one short clip, a batch of clips clip by clip);
* against a shortcut in one region of the face (off by default): a grey rectangle of random
  size, shape and place over the face (``cutout_prob``; random erasing, Zhong et al. 2017;
  "Face-Cutout", Das et al. 2021), so that no single region carries the decision;
* against a sharpness shortcut (off by default): blur REAL faces only (``real_blur_prob``),
  or move the REAL faces' sharpness onto the FAKE faces' distribution, batch by batch
  (``sharpness_match``; :func:`match_sharpness` / :func:`apply_sharpness_match`).
"""

from __future__ import annotations

import io
import math

import av
import numpy as np

from dfd.image_stats import middle_half
from dfd.training.config import AugmentConfig


def _as_batch(x):
    """``(images [N,H,W,3], was_single)`` for a face or a clip."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.shape.rank == 3:
        return x[tf.newaxis], True
    if x.shape.rank == 4:
        return x, False
    raise ValueError(f"augment expects a face [H,W,3] or a clip [T,H,W,3], got rank {x.shape.rank}")


def flip(x):
    """Horizontal flip of a face or of every frame of a clip (deterministic)."""
    import tensorflow as tf

    return tf.reverse(x, axis=[-2])


def jpeg(x, quality):
    """Re-compress a uint8 face / every frame of a clip at one JPEG ``quality`` (0-100)."""
    import tensorflow as tf

    quality = tf.cast(quality, tf.int32)
    batch, single = _as_batch(x)
    out = tf.map_fn(lambda im: tf.image.adjust_jpeg_quality(im, quality), batch,
                    fn_output_signature=tf.TensorSpec(batch.shape[1:], tf.uint8))
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


def brightness_contrast(x, delta, factor):
    """Add ``delta`` (fraction of 255) and scale contrast by ``factor`` around each frame's mean."""
    import tensorflow as tf

    f = tf.image.convert_image_dtype(x, tf.float32)
    f = tf.image.adjust_brightness(f, delta)
    f = tf.image.adjust_contrast(f, factor)
    return tf.image.convert_image_dtype(tf.clip_by_value(f, 0.0, 1.0), tf.uint8, saturate=True)


def rotate_zoom(x, angle, scale, fill_mode: str = "REFLECT", shift=(0.0, 0.0)):
    """Rotate by ``angle`` radians and zoom by ``scale`` (>1 zooms in) about the centre, then
    move the content by ``shift`` (dx, dy; fractions of the width / height)."""
    import tensorflow as tf

    batch, single = _as_batch(x)
    shape = tf.shape(batch)
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # maps output pixel (x, y) to the input pixel it is read from
    a0, a1, b0, b1 = cos, -sin, sin, cos
    # the content moves by (dx, dy) px: output (x, y) reads the rotated input at (x-dx, y-dy)
    dx = tf.cast(shift[0], tf.float32) * w
    dy = tf.cast(shift[1], tf.float32) * h
    a2 = cx - a0 * (cx + dx) - a1 * (cy + dy)
    b2 = cy - b0 * (cx + dx) - b1 * (cy + dy)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])
    transforms = tf.tile(transform[tf.newaxis], [shape[0], 1])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(batch, tf.float32), transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode,
    )
    out = tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


def rescale(x, factor):
    """Down-scale by ``factor`` (0 < factor <= 1, area averaging) and back up (bilinear): the
    detail a low-resolution upload lost. Same shape and dtype."""
    import tensorflow as tf

    batch, single = _as_batch(x)
    shape = tf.shape(batch)
    small = tf.maximum(1, tf.cast(tf.round(tf.cast(shape[1:3], tf.float32) * factor), tf.int32))
    f = tf.image.resize(tf.cast(batch, tf.float32), small, method="area")
    f = tf.image.resize(f, shape[1:3], method="bilinear")
    out = tf.cast(tf.clip_by_value(tf.round(f), 0.0, 255.0), tf.uint8)
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


def blur(x, sigma, radius: int = 6):
    """Gaussian blur with standard deviation ``sigma`` pixels (a tensor is fine; the kernel
    is cut at ``radius``), reflect padding. Same shape and dtype."""
    import tensorflow as tf

    batch, single = _as_batch(x)
    g = _gaussian(sigma, radius)
    kx = tf.tile(tf.reshape(g, [1, -1, 1, 1]), [1, 1, 3, 1])
    ky = tf.tile(tf.reshape(g, [-1, 1, 1, 1]), [1, 1, 3, 1])
    f = tf.pad(tf.cast(batch, tf.float32), [[0, 0], [radius, radius], [radius, radius], [0, 0]],
               mode="REFLECT")
    f = tf.nn.depthwise_conv2d(f, kx, [1, 1, 1, 1], "VALID")
    f = tf.nn.depthwise_conv2d(f, ky, [1, 1, 1, 1], "VALID")
    out = tf.cast(tf.clip_by_value(tf.round(f), 0.0, 255.0), tf.uint8)
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


def cutout(x, area, aspect, centre, fill: int = 128):
    """Fill one rectangle of a face (of every frame of a clip, the same rectangle) with grey
    ``fill``: ``area`` its fraction of the face (0-1), ``aspect`` its height / width, ``centre``
    ``(y, x)`` as fractions of the face; the part outside the face is cut off. Same shape and
    dtype."""
    import tensorflow as tf

    batch, single = _as_batch(x)
    shape = tf.shape(batch)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    area, aspect = tf.cast(area, tf.float32), tf.cast(aspect, tf.float32)
    rh = tf.minimum(h, tf.sqrt(area * aspect) * h)
    rw = tf.minimum(w, tf.sqrt(area / aspect) * w)
    cy, cx = tf.cast(centre[0], tf.float32) * h, tf.cast(centre[1], tf.float32) * w
    ys = tf.range(h)[:, None] + 0.5
    xs = tf.range(w)[None, :] + 0.5
    inside = ((tf.abs(ys - cy) <= rh / 2) & (tf.abs(xs - cx) <= rw / 2))[None, :, :, None]
    out = tf.where(inside, tf.constant(fill, tf.uint8), batch)
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


#: The operations sharpness matching chooses from, as ``(sigma, amount)`` of
#: ``x + amount * (x - blur(x, sigma))``: the identity, Gaussian blurs (amount -1) of growing
#: sigma, and unsharp masks (sigma 1) of growing amount.
_MATCH_OPS = (((1.0, 0.0),)
              + tuple((s, -1.0) for s in (0.4, 0.47, 0.55, 0.62, 0.7, 0.8, 0.9, 1.0, 1.2, 1.45, 1.75,
                                            2.1, 2.5, 3.0))
              + tuple((1.0, a) for a in (0.1, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.2, 3.0)))
_RADIUS = 6  # Gaussian kernels are cut at 6 px, as in :func:`blur`


def _gaussian(sigma, radius: int = _RADIUS):
    """Normalised 1-D Gaussian taps ``[..., 2 * radius + 1]`` for a tensor of sigmas."""
    import tensorflow as tf

    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)[..., tf.newaxis]
    g = tf.exp(-0.5 * tf.square(taps / sigma))
    return g / tf.reduce_sum(g, axis=-1, keepdims=True)


def _grey(x):
    """``[N, H, W, 1]`` grey levels (ITU-R 601 weights, rounded to integers, as OpenCV's) of
    uint8 RGB faces, as float32."""
    import tensorflow as tf

    return tf.round(tf.image.rgb_to_grayscale(tf.cast(x, tf.float32)))


#: Variance the Laplacian adds from rounding a grey image to integers (uniform error, 1/12 per
#: pixel; the kernel's squared taps sum to 20).
_ROUNDING_VAR = 20.0 / 12.0


def _laplacian(x):
    """The Laplacian of the last two axes of ``x`` (VALID: each side loses a pixel); the
    kernel of OpenCV's ``Laplacian`` with ``ksize=1``, as ``dfd audit`` uses it."""
    return (x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]
            - 4.0 * x[..., 1:-1, 1:-1])


def sharpness(x):
    """Per face: :mod:`dfd.image_stats`'s sharpness (variance of the Laplacian over the middle
    half of the grey face, as ``dfd audit`` measures it) at the faces' own size. ``x``: uint8 faces
    ``[N, H, W, 3]`` (H, W >= 8); returns float32 ``[N]``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    h, w = int(x.shape[1]), int(x.shape[2])
    (r0, rh), (c0, cw) = middle_half(h), middle_half(w)
    g = tf.pad(_grey(x), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")[..., 0]
    lap = _laplacian(g[:, r0:r0 + rh + 2, c0:c0 + cw + 2])
    return tf.math.reduce_variance(lap, axis=[1, 2])


def _candidate_sharpness(x):
    """Sharpness of every face of ``x`` after each operation of :data:`_MATCH_OPS`:
    ``[len(_MATCH_OPS), N]``. Computed on the grey middle of the face only (the operations
    are linear, so grey-then-operate equals operate-then-grey up to rounding)."""
    import tensorflow as tf

    h, w = int(x.shape[1]), int(x.shape[2])
    (r0, rh), (c0, cw) = middle_half(h), middle_half(w)
    m = _RADIUS + 1
    grey = tf.pad(_grey(x), [[0, 0], [m, m], [m, m], [0, 0]], mode="REFLECT")
    region = grey[:, r0:r0 + rh + 2 * m, c0:c0 + cw + 2 * m, 0]  # the middle, margin m
    centre = region[:, _RADIUS:-_RADIUS, _RADIUS:-_RADIUS]  # the middle, margin 1
    sigmas = sorted({s for s, _ in _MATCH_OPS})
    g = _gaussian(tf.constant(sigmas))  # [sigmas, taps]
    n, hh, ww = tf.shape(region)[0], int(region.shape[1]), int(region.shape[2])
    k = len(sigmas)
    # the separable blur as two matrix products with banded matrices (much faster than
    # convolutions here); the result comes out transposed, [sigmas, N, w, h], which changes
    # no variance: the centre's Laplacian is transposed to match
    b0, b1 = _band(g, ww), _band(g, hh)  # [sigmas, W, w], [sigmas, H, h]
    b = tf.matmul(tf.reshape(region, [-1, ww]),
                  tf.reshape(tf.transpose(b0, [1, 0, 2]), [ww, -1]))  # [N*H, sigmas*w]
    b = tf.transpose(tf.reshape(b, [n, hh, k, -1]), [2, 0, 3, 1])  # [sigmas, N, w, H]
    b = tf.reshape(tf.matmul(tf.reshape(b, [k, -1, hh]), b1), [k, n, ww - 2 * _RADIUS, -1])
    lap_c = _laplacian(tf.transpose(centre, [0, 2, 1]))  # [N, w, h]
    lap_b = _laplacian(b)  # [sigmas, N, w, h]
    # Var(L(c + a (c - b))) = (1 + a)^2 Var(Lc) + a^2 Var(Lb) - 2 a (1 + a) Cov(Lc, Lb)
    dc = lap_c - tf.reduce_mean(lap_c, axis=[1, 2], keepdims=True)
    db = lap_b - tf.reduce_mean(lap_b, axis=[2, 3], keepdims=True)
    var_c = tf.reduce_mean(tf.square(dc), axis=[1, 2])  # [N]
    var_b = tf.reduce_mean(tf.square(db), axis=[2, 3])  # [sigmas, N]
    cov = tf.reduce_mean(dc[None] * db, axis=[2, 3])
    out = []
    for s, a in _MATCH_OPS:
        j = sigmas.index(s)
        v = (1 + a) ** 2 * var_c + a * a * var_b[j] - 2 * a * (1 + a) * cov[j]
        # a changed face is rounded to uint8 again: the Laplacian of that rounding noise
        out.append(v if a == 0 else v + _ROUNDING_VAR)
    return tf.stack(out)


def _band(g, n: int):
    """``[sigmas, n, n - taps + 1]`` banded matrices: ``x @ band[s]`` is the VALID
    convolution of the rows of ``x`` (length ``n``) with the taps ``g[s]``."""
    import tensorflow as tf

    taps = int(g.shape[1])
    d = tf.range(n)[:, None] - tf.range(n - taps + 1)[None, :]  # input - output position
    inside = tf.logical_and(d >= 0, d < taps)
    vals = tf.gather(g, tf.clip_by_value(d, 0, taps - 1), axis=1)
    return tf.where(inside[None], vals, 0.0)


def _apply_ops(x, sigma, amount):
    """``x + amount * (x - blur(x, sigma))`` with one ``(sigma, amount)`` per face of the uint8
    faces ``x`` ``[N, H, W, 3]``, all in one depthwise convolution (faces x channels)."""
    import tensorflow as tf

    n, h, w = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2])
    f = tf.cast(x, tf.float32)
    chans = tf.reshape(tf.transpose(f, [1, 2, 0, 3]), [1, h, w, -1])  # [1, H, W, N*3]
    g = tf.transpose(tf.repeat(_gaussian(sigma), 3, axis=0))  # [taps, N*3]
    taps = 2 * _RADIUS + 1
    b = tf.pad(chans, [[0, 0], [_RADIUS, _RADIUS], [_RADIUS, _RADIUS], [0, 0]], mode="REFLECT")
    b = tf.nn.depthwise_conv2d(b, tf.reshape(g, [1, taps, -1, 1]), [1, 1, 1, 1], "VALID")
    b = tf.nn.depthwise_conv2d(b, tf.reshape(g, [taps, 1, -1, 1]), [1, 1, 1, 1], "VALID")
    blurred = tf.transpose(tf.reshape(b, [h, w, n, 3]), [2, 0, 1, 3])
    a = tf.reshape(tf.cast(amount, tf.float32), [-1, 1, 1, 1])
    out = f + a * (f - blurred)
    return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8),
                           x.shape)


def match_sharpness(faces, label, share: float = 1.0, mask=None, seed=None):
    """Move the sharpness of REAL faces onto the FAKE faces' distribution, within one batch.

    ``faces``: uint8 ``[B, H, W, 3]``, or clips ``[B, T, H, W, 3]`` with ``mask`` ``[B, T]``
    (a clip's sharpness is the mean over its real frames; one operation per clip);
    ``label``: ``[B]``, FAKE = 1. A ``share`` of the REAL items (drawn per item) is matched:
    the matched REAL item of rank ``i`` (by sharpness, among the m matched) is given the
    sharpness of the batch's FAKE item at quantile ``(i + 0.5) / m``, by the operation of
    :data:`_MATCH_OPS` (identity, a blur, an unsharp mask) whose result comes closest in log
    sharpness. After it, sharpness alone tells nothing about the label within the batch:
    the sharpest faces are no longer all REAL (``real_blur_prob`` leaves them so). FAKE items
    are never changed. A batch without both labels is returned as it is.

    Measured harmful for training (docs/generalisation.md): since only REAL faces are
    changed, models learn the operation itself as a REAL cue.
    """
    import tensorflow as tf

    faces = tf.convert_to_tensor(faces)
    clips = faces.shape.rank == 5
    if faces.shape.rank not in (4, 5) or faces.dtype != tf.uint8:
        raise ValueError(f"match_sharpness expects uint8 faces [B,H,W,3] or clips [B,T,H,W,3], "
                         f"got {faces.dtype.name} of rank {faces.shape.rank}")
    if min(int(faces.shape[-3]), int(faces.shape[-2])) < 8:
        raise ValueError(f"match_sharpness needs faces of at least 8 x 8 pixels, got "
                         f"{faces.shape[-3]} x {faces.shape[-2]}")
    b = tf.shape(faces)[0]
    frames = tf.reshape(faces, [-1, *faces.shape[-3:]]) if clips else faces
    cand = _candidate_sharpness(frames)  # [K, frames]
    if clips:
        t = int(faces.shape[1])
        valid = tf.ones([b, t]) if mask is None else tf.cast(mask, tf.float32)
        per = tf.reshape(cand, [len(_MATCH_OPS), b, t])
        cand = tf.reduce_sum(per * valid, -1) / tf.maximum(tf.reduce_sum(valid, -1), 1.0)
    now = cand[0]  # the identity: sharpness as it is
    y = tf.reshape(tf.cast(label, tf.float32), [-1])
    draw = tf.random.stateless_uniform([b], seed) if seed is not None else tf.random.uniform([b])
    chosen = tf.logical_and(y < 0.5, draw < share)
    fake_s = tf.sort(tf.boolean_mask(now, y >= 0.5))
    idx = tf.cast(tf.where(chosen)[:, 0], tf.int32)
    n_f, n_r = tf.size(fake_s), tf.size(idx)

    def matched():
        rank = tf.argsort(tf.argsort(tf.gather(now, idx)))
        q = (tf.cast(rank, tf.float32) + 0.5) / tf.cast(n_r, tf.float32) * tf.cast(n_f, tf.float32)
        target = tf.gather(fake_s, tf.minimum(tf.cast(q, tf.int32), n_f - 1))
        err = tf.abs(tf.math.log1p(tf.gather(cand, idx, axis=1)) - tf.math.log1p(target))
        pick = tf.scatter_nd(idx[:, None], tf.argmin(err, axis=0, output_type=tf.int32), [b])
        ops = tf.constant(_MATCH_OPS, tf.float32)
        sigma, amount = tf.gather(ops[:, 0], pick), tf.gather(ops[:, 1], pick)
        if clips:
            t = int(faces.shape[1])
            sigma, amount = tf.repeat(sigma, t), tf.repeat(amount, t)
        out = _apply_ops(frames, sigma, amount)
        return tf.reshape(out, tf.shape(faces))

    out = tf.cond(tf.logical_and(n_f > 0, n_r > 0), matched, lambda: faces)
    if clips and mask is not None:  # padded frames stay zero, as the reader left them
        out = out * tf.cast(mask, tf.uint8)[..., None, None, None]
    return tf.ensure_shape(out, faces.shape)


def apply_sharpness_match(ds, cfg: AugmentConfig, input_kind: str, seed: int = 0):
    """:func:`match_sharpness` on every batch of a BATCHED ``(inputs, label, weight)``
    dataset, with ``cfg.sharpness_match`` as its share; seeds change each epoch."""

    def fn(batch, s):
        inputs, label, weight = batch
        if input_kind == "clips":
            inputs = dict(inputs)
            inputs["faces"] = match_sharpness(inputs["faces"], label, cfg.sharpness_match,
                                              inputs["mask"], s)
            return inputs, label, weight
        return match_sharpness(inputs, label, cfg.sharpness_match, seed=s), label, weight

    return _map_with_batch_seeds(ds, fn, seed + 1)


def _map_with_batch_seeds(ds, fn, seed: int):
    """``ds.map(lambda batch, s: fn(batch, s))`` in parallel, ``s`` an ``int64[2]`` seed per
    batch drawn from ``seed`` and changing each epoch (``Dataset.random``), so runs repeat
    given the order of batches."""
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def h264(frames: np.ndarray, crf: int, intra_only: bool = False,
         preset: str = "ultrafast") -> np.ndarray:
    """``frames`` (uint8 ``[N, H, W, 3]`` RGB) encoded with libx264 at ``crf`` as one clip and
    decoded back (yuv420p, as nearly every video on the web). ``intra_only`` codes every
    frame on its own (for a batch of unrelated faces); otherwise the frames are predicted
    from each other (a clip of one video). Odd sizes are padded by edge repetition for the
    codec and cropped back. Deterministic: one thread, no randomness."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"h264 expects uint8 frames [N, H, W, 3], got {frames.dtype} "
                         f"{frames.shape}")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf!r}")
    n, h, w = frames.shape[:3]
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, [(0, 0), (0, ph - h), (0, pw - w), (0, 0)], mode="edge")
    buf = io.BytesIO()
    params = ["threads=1", "bframes=0"] + (["keyint=1"] if intra_only else [])
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset,
                          "x264-params": ":".join(params)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r", format="h264") as inp:
        got = [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
    if len(got) != n:
        raise ValueError(f"h264 round trip gave {len(got)} frames for {n}")
    return np.stack(got)[:, :h, :w]


def codec_batch(x: np.ndarray, seed, cfg: AugmentConfig, clips: bool = False) -> np.ndarray:
    """The H.264 augmentation on one batch (numpy): one CRF drawn for the batch from
    ``cfg.codec_crf``; each face (or clip) re-encoded with probability ``cfg.codec_prob``.
    Faces are coded intra-only as one clip, in a random order (the encoder's rate control
    gives a frame's place in the clip a little weight, and a batch may be ordered by label:
    a real face, its self-blended fake, ...); each clip is coded as its own clip."""
    rng = np.random.default_rng(np.asarray(seed, np.int64).tolist())
    lo, hi = cfg.codec_crf
    crf = int(rng.integers(lo, hi + 1))
    use = rng.random(len(x)) < cfg.codec_prob
    if not use.any():
        return x
    out = np.array(x, copy=True)
    if clips:
        for i in np.flatnonzero(use):
            out[i] = h264(x[i], crf)
    else:
        order = rng.permutation(np.flatnonzero(use))
        out[order] = h264(x[order], crf, intra_only=True)
    return out


def make_codec_fn(cfg: AugmentConfig, input_kind: str):
    """A ``(inputs, label, weight, seed) -> (inputs, label, weight)`` map over BATCHES that
    re-encodes faces through H.264 (:func:`codec_batch`, one ``tf.py_function`` call per
    batch); ``seed`` is an ``int64[2]`` tensor (see :func:`apply_codec`)."""
    import tensorflow as tf

    def run(x, s):
        return codec_batch(x.numpy(), s.numpy(), cfg, clips=input_kind == "clips")

    def fn(inputs, label, weight, seed):
        faces = inputs["faces"] if input_kind == "clips" else inputs
        out = tf.py_function(run, [faces, seed], tf.uint8)
        out = tf.ensure_shape(out, faces.shape)
        if input_kind == "clips":
            inputs = dict(inputs)
            inputs["faces"] = out * tf.cast(inputs["mask"], tf.uint8)[..., None, None, None]
            return inputs, label, weight
        return out, label, weight

    return fn


def apply_codec(ds, cfg: AugmentConfig, input_kind: str, seed: int = 0):
    """The H.264 augmentation on a BATCHED ``(inputs, label, weight)`` dataset, batches in
    parallel. Seeds come from ``seed`` and change each epoch (``Dataset.random``), so runs
    repeat given the order of batches."""

    fn = make_codec_fn(cfg, input_kind)
    return _map_with_batch_seeds(ds, lambda b, s: fn(*b, s), seed)


def augment(x, cfg: AugmentConfig, seed: int | None = None, label=None):
    """Apply the switched-on augmentations of ``cfg`` to one face or one clip (uint8).

    ``label`` (FAKE = 1) is needed only by ``cfg.real_blur_prob``, which blurs REAL faces
    alone; without a label that step is skipped.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.dtype != tf.uint8:
        raise ValueError(f"augment expects uint8 faces, got {x.dtype.name}")
    if not cfg.active:
        return x

    def u(lo=0.0, hi=1.0):
        return tf.random.uniform([], lo, hi, dtype=tf.float32)

    if cfg.flip:
        x = tf.cond(u() < 0.5, lambda: flip(x), lambda: x)
    if cfg.rotation or cfg.zoom or cfg.shift:
        rot = math.radians(float(cfg.rotation))
        angle = u(-rot, rot) if rot else tf.constant(0.0)
        scale = u(1.0 - cfg.zoom, 1.0 + cfg.zoom) if cfg.zoom else tf.constant(1.0)
        shift = (u(-cfg.shift, cfg.shift), u(-cfg.shift, cfg.shift)) if cfg.shift else (0.0, 0.0)
        x = rotate_zoom(x, angle, scale, shift=shift)
    if cfg.rescale_prob:
        factor = u(*cfg.rescale_range)
        x = tf.cond(u() < cfg.rescale_prob, lambda: rescale(x, factor), lambda: x)
    if cfg.blur_prob:
        sigma = u(*cfg.blur_sigma)
        x = tf.cond(u() < cfg.blur_prob, lambda: blur(x, sigma), lambda: x)
    if cfg.real_blur_prob and label is not None:
        sigma = u(*cfg.real_blur_sigma)
        hit = tf.logical_and(tf.cast(label, tf.float32) < 0.5, u() < cfg.real_blur_prob)
        x = tf.cond(hit, lambda: blur(x, sigma), lambda: x)
    if cfg.cutout_prob:
        area = u(*cfg.cutout_area)
        aspect = tf.exp(u(math.log(0.3), math.log(1 / 0.3)))
        centre = (u(), u())
        x = tf.cond(u() < cfg.cutout_prob, lambda: cutout(x, area, aspect, centre), lambda: x)
    if cfg.brightness or cfg.contrast:
        delta = u(-cfg.brightness, cfg.brightness) if cfg.brightness else tf.constant(0.0)
        factor = u(1.0 - cfg.contrast, 1.0 + cfg.contrast) if cfg.contrast else tf.constant(1.0)
        x = brightness_contrast(x, delta, factor)
    if cfg.jpeg and cfg.jpeg_prob > 0:
        lo, hi = cfg.jpeg_quality
        quality = tf.random.uniform([], lo, hi + 1, dtype=tf.int32)
        x = tf.cond(u() < cfg.jpeg_prob, lambda: jpeg(x, quality), lambda: x)
    return x


def make_augment_fn(cfg: AugmentConfig, input_kind: str):
    """A ``(inputs, label, weight) -> same`` map function that augments the faces."""
    import tensorflow as tf

    def fn(inputs, label, weight):
        if input_kind == "clips":
            inputs = dict(inputs)
            faces = augment(inputs["faces"], cfg, label=label)
            # padded frames stay zero, as the reader left them
            inputs["faces"] = faces * tf.cast(inputs["mask"], tf.uint8)[:, None, None, None]
        else:
            inputs = augment(inputs, cfg, label=label)
        return inputs, label, weight

    return fn
