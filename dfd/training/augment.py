"""Deepfake-relevant augmentations as graph ops, for use inside ``tf.data`` maps.

All functions take uint8 faces, either one face ``[H, W, 3]`` or one clip ``[T, H, W, 3]``,
and return the same shape and dtype. For a clip every random parameter is drawn ONCE and
applied to every frame, so the motion between frames (what temporal models look at) is
left intact.

* horizontal flip;
* JPEG re-compression at a random quality (fakes are judged after platforms re-encode them);
* brightness / contrast;
* small rotation and zoom, one projective transform (``ImageProjectiveTransformV3``).
"""

from __future__ import annotations

import math

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


def rotate_zoom(x, angle, scale, fill_mode: str = "REFLECT"):
    """Rotate by ``angle`` radians and zoom by ``scale`` (>1 zooms in) about the centre."""
    import tensorflow as tf

    batch, single = _as_batch(x)
    shape = tf.shape(batch)
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # maps output pixel (x, y) to the input pixel it is read from
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])
    transforms = tf.tile(transform[tf.newaxis], [shape[0], 1])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(batch, tf.float32), transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode,
    )
    out = tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
    out = tf.ensure_shape(out, batch.shape)
    return out[0] if single else out


def augment(x, cfg: AugmentConfig, seed: int | None = None):
    """Apply the switched-on augmentations of ``cfg`` to one face or one clip (uint8)."""
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
    if cfg.rotation or cfg.zoom:
        rot = math.radians(float(cfg.rotation))
        angle = u(-rot, rot) if rot else tf.constant(0.0)
        scale = u(1.0 - cfg.zoom, 1.0 + cfg.zoom) if cfg.zoom else tf.constant(1.0)
        x = rotate_zoom(x, angle, scale)
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
            faces = augment(inputs["faces"], cfg)
            # padded frames stay zero, as the reader left them
            inputs["faces"] = faces * tf.cast(inputs["mask"], tf.uint8)[:, None, None, None]
        else:
            inputs = augment(inputs, cfg)
        return inputs, label, weight

    return fn
