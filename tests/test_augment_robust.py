"""Robustness augmentations: H.264 re-encode, down-then-up scaling, blur, crop re-framing.
Each changes the image, keeps shape and dtype, and repeats given its parameters / seed."""

from __future__ import annotations

import numpy as np
import pytest

from dfd.training.augment import (
    apply_codec,
    augment,
    blur,
    codec_batch,
    cutout,
    h264,
    rescale,
    rotate_zoom,
)
from dfd.training.config import AugmentConfig

S = 48


def _faces(n=4, size=S, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 1 - xx], -1) * 160 + 40
    return np.clip(base[None] + rng.normal(0, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _only(**kw):
    """An AugmentConfig with everything off but ``kw``."""
    off = dict(flip=False, jpeg=False, brightness=0.0, contrast=0.0, rotation=0.0, zoom=0.0)
    off.update(kw)
    return AugmentConfig(**off)


def _first_batch_of(tmp_path):
    """``first_batch(**augment)``: the first training batch of tiny shards, with only the
    given augmentations on (same seed, so the same examples in the same order each call)."""
    from dfd.training.config import TrainConfig
    from dfd.training.data import make_dataset
    from tests.test_training import write_tiny_shards

    shards = write_tiny_shards(tmp_path / "s", records=8, faces=1, size=S, max_records=64)

    def first_batch(**aug):
        cfg = TrainConfig(run_dir=str(tmp_path / "r"), train=[str(shards)], face_size=S,
                          batch_size=8, class_balance="none", augment=_only(**aug), seed=1)
        return next(iter(make_dataset(cfg, training=True).as_numpy_iterator()))

    return first_batch


def test_robustness_augmentations_are_off_by_default():
    cfg = AugmentConfig()
    assert cfg.shift == 0 and cfg.rescale_prob == 0 and cfg.blur_prob == 0
    assert cfg.codec_prob == 0 and not cfg.codec_active
    assert not _only().active
    assert _only(rescale_prob=0.5).active and _only(blur_prob=0.5).active
    assert _only(shift=0.1).active and _only(codec_prob=0.5).codec_active
    assert cfg.real_blur_prob == 0 and _only(real_blur_prob=0.5).active
    assert cfg.cutout_prob == 0 and _only(cutout_prob=0.5).active


@pytest.mark.parametrize("bad, match", [
    ({"codec_crf": (40, 20)}, "codec_crf"), ({"codec_crf": (10, 60)}, "codec_crf"),
    ({"rescale_range": (0.0, 0.5)}, "rescale_range"), ({"blur_sigma": (0, 1)}, "blur_sigma"),
    ({"codec_prob": 1.5}, "codec_prob"), ({"shift": -0.1}, "shift"),
    ({"real_blur_prob": 2.0}, "real_blur_prob"), ({"real_blur_sigma": (1.0, 0.5)}, "real_blur_sigma"),
    ({"cutout_prob": 1.5}, "cutout_prob"), ({"cutout_area": (0.0, 0.2)}, "cutout_area"),
    ({"cutout_area": (0.3, 0.2)}, "cutout_area"),
])
def test_augment_config_checks_the_new_fields(bad, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**bad)


@pytest.mark.parametrize("intra", [True, False])
def test_h264_round_trip_changes_keeps_shape_and_repeats(intra):
    x = _faces(5)
    y = h264(x, crf=35, intra_only=intra)
    assert y.shape == x.shape and y.dtype == np.uint8
    err = np.abs(y.astype(int) - x).mean()
    assert 1.0 < err < 40.0  # lossy, yet the same faces
    np.testing.assert_array_equal(y, h264(x, crf=35, intra_only=intra))
    # a higher CRF loses more
    assert np.abs(h264(x, crf=50, intra_only=intra).astype(int) - x).mean() > err


def test_h264_odd_sizes_and_bad_input():
    x = _faces(2, size=33)
    assert h264(x, 30).shape == (2, 33, 33, 3)
    with pytest.raises(ValueError, match="uint8 frames"):
        h264(x.astype(np.float32), 30)
    with pytest.raises(ValueError, match="crf must be"):
        h264(x, 70)


def test_codec_batch_codes_the_faces_in_a_random_order(monkeypatch):
    """A batch ordered by label (real, its fake, ...) is not coded in that order: the
    encoder's rate control weighs a frame's place in the clip. Each face comes back to its
    own slot."""
    import dfd.training.augment as augment

    x = np.repeat(np.arange(8, dtype=np.uint8)[:, None, None, None], 4, 1).repeat(4, 2).repeat(3, 3)
    orders = []

    def identity(faces, crf, intra_only=False):
        orders.append([int(f[0, 0, 0]) for f in faces])
        return faces.copy()

    monkeypatch.setattr(augment, "h264", identity)
    for seed in range(6):
        np.testing.assert_array_equal(codec_batch(x, (seed, 0), _only(codec_prob=1.0)), x)
    assert all(sorted(o) == list(range(8)) for o in orders)
    assert any(o != sorted(o) for o in orders)


def test_codec_batch_probability_and_seed():
    x = _faces(6)
    cfg = _only(codec_prob=1.0, codec_crf=(30, 40))
    a = codec_batch(x, (1, 2), cfg)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert all(not np.array_equal(a[i], x[i]) for i in range(6))
    np.testing.assert_array_equal(a, codec_batch(x, (1, 2), cfg))
    np.testing.assert_array_equal(codec_batch(x, (1, 2), _only(codec_prob=0.0)), x)
    half = codec_batch(x, (3, 3), _only(codec_prob=0.5))
    changed = [not np.array_equal(half[i], x[i]) for i in range(6)]
    assert 0 < sum(changed) < 6  # drawn per face, not per batch
    clips = np.stack([_faces(4, seed=1), _faces(4, seed=2)])
    c = codec_batch(clips, (5, 5), cfg, clips=True)
    assert c.shape == clips.shape and not np.array_equal(c, clips)


def test_codec_map_runs_on_batches_in_tf_data():
    import tensorflow as tf

    x = _faces(8)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(8, np.float32), np.ones(8, np.float32)))
    ds = apply_codec(ds.batch(4), _only(codec_prob=1.0), "frames", seed=3)
    out = np.concatenate([b[0] for b in ds.as_numpy_iterator()])
    assert out.shape == x.shape and out.dtype == np.uint8
    assert all(not np.array_equal(a, b) for a, b in zip(out, x))
    clips = tf.data.Dataset.from_tensor_slices((
        {"faces": np.stack([x[:4], x[4:]]), "mask": np.array([[1, 1, 1, 0]] * 2, bool)},
        np.zeros(2, np.float32), np.ones(2, np.float32)))
    (got, _, _), = apply_codec(clips.batch(2), _only(codec_prob=1.0), "clips").as_numpy_iterator()
    assert got["faces"].shape == (2, 4, S, S, 3) and not got["faces"][:, 3].any()  # padding kept
    assert not np.array_equal(got["faces"][:, :3], np.stack([x[:3], x[4:7]]))


def test_rescale_loses_detail_and_repeats():
    x = _faces(2)
    y = rescale(x, 0.25).numpy()
    assert y.shape == x.shape and y.dtype == np.uint8
    # the fine noise is gone: neighbouring pixels are much closer than before
    def rough(a):
        return np.abs(np.diff(a.astype(int), axis=2)).mean()
    assert rough(y) < 0.5 * rough(x)
    np.testing.assert_array_equal(y, rescale(x, 0.25).numpy())
    np.testing.assert_array_equal(rescale(x, 1.0).numpy(), x)
    assert rescale(x[0], 0.5).numpy().shape == x[0].shape  # one face works too


def test_blur_smooths_and_repeats():
    x = _faces(2)
    y = blur(x, 1.5).numpy()
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.abs(np.diff(y.astype(int), axis=1)).mean() < 0.5 * np.abs(
        np.diff(x.astype(int), axis=1)).mean()
    np.testing.assert_array_equal(y, blur(x, 1.5).numpy())
    assert np.abs(blur(x, 3.0).numpy().astype(int) - x).mean() > np.abs(y.astype(int) - x).mean()


def test_real_blur_blurs_real_faces_only():
    x = _faces(1)[0]
    cfg = _only(real_blur_prob=1.0, real_blur_sigma=(1.0, 1.0))
    real = augment(x, cfg, label=0.0).numpy()
    np.testing.assert_array_equal(real, blur(x, 1.0).numpy())
    np.testing.assert_array_equal(augment(x, cfg, label=1.0).numpy(), x)  # FAKE = 1: untouched
    np.testing.assert_array_equal(augment(x, cfg).numpy(), x)  # no label: the step is skipped
    clip = _faces(3)
    np.testing.assert_array_equal(augment(clip, cfg, label=0).numpy(), blur(clip, 1.0).numpy())


def test_training_pipeline_blurs_only_the_real_examples(tmp_path):
    first_batch = _first_batch_of(tmp_path)
    plain, blurred = first_batch(), first_batch(real_blur_prob=1.0)
    np.testing.assert_array_equal(plain[1], blurred[1])  # same examples, same order
    assert 0 < (plain[1] < 0.5).sum() < len(plain[1])
    for a, b, y in zip(plain[0], blurred[0], plain[1]):
        assert np.array_equal(a, b) == (y > 0.5), y


def test_shift_moves_the_crop_framing():
    x = _faces(1)[0]
    y = rotate_zoom(x, 0.0, 1.0, shift=(0.25, 0.0)).numpy()
    assert y.shape == x.shape and y.dtype == np.uint8
    d = S // 4
    np.testing.assert_array_equal(y[:, d:], x[:, :-d])  # content moved right by a quarter
    np.testing.assert_array_equal(rotate_zoom(x, 0.0, 1.0).numpy(), x)


def test_augment_applies_the_switched_on_robustness_steps():
    import tensorflow as tf

    x = _faces(1)[0]
    for kw in ({"rescale_prob": 1.0}, {"blur_prob": 1.0}, {"shift": 0.2}):
        tf.random.set_seed(7)
        a = augment(x, _only(**kw)).numpy()
        tf.random.set_seed(7)
        b = augment(x, _only(**kw)).numpy()
        assert a.shape == x.shape and a.dtype == np.uint8
        assert not np.array_equal(a, x), kw
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(augment(x, _only(rescale_prob=0.0)).numpy(), x)
    clip = _faces(3)
    assert augment(clip, _only(blur_prob=1.0, rescale_prob=1.0)).numpy().shape == clip.shape


def test_training_pipeline_re_encodes_when_asked(tmp_path):
    first_batch = _first_batch_of(tmp_path)
    plain, coded = first_batch(), first_batch(codec_prob=1.0)
    np.testing.assert_array_equal(plain[1], coded[1])  # same examples, same order
    assert coded[0].shape == plain[0].shape and coded[0].dtype == np.uint8
    assert all(not np.array_equal(a, b) for a, b in zip(plain[0], coded[0]))


def test_cutout_greys_one_rectangle_of_the_given_area_and_nothing_else():
    x = _faces(1, size=40)[0]
    x[x == 128] = 129  # so the grey fill is recognisable
    y = cutout(x, area=0.25, aspect=1.0, centre=(0.5, 0.25)).numpy()
    grey = np.all(y == 128, axis=-1)
    rows, cols = np.nonzero(grey)
    assert grey.sum() == 20 * 20  # a quarter of the face, square
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 29, 0, 19)
    np.testing.assert_array_equal(y[~grey], x[~grey])
    # cut off at the border: a tall rectangle centred on the top edge keeps its lower half
    top = np.all(cutout(x, area=0.1, aspect=4.0, centre=(0.0, 0.5)).numpy() == 128, axis=-1)
    assert top[0].any() and not top[-1].any() and 0 < top.sum() < 0.1 * 40 * 40
    # a clip: the same rectangle on every frame
    clip = np.stack([x, x[::-1], x[:, ::-1]])
    yc = cutout(clip, area=0.1, aspect=0.5, centre=(0.3, 0.6)).numpy()
    masks = np.all(yc == 128, axis=-1)
    assert masks[0].sum() > 0 and (masks == masks[0]).all()


def test_augment_applies_cutout_when_asked():
    import tensorflow as tf

    x = _faces(1)[0]
    x[x == 128] = 129
    tf.random.set_seed(3)
    a = augment(x, _only(cutout_prob=1.0, cutout_area=(0.1, 0.1))).numpy()
    grey = np.all(a == 128, axis=-1)
    # 10% of the face, less what falls outside it
    assert 0 < grey.sum() <= 0.1 * S * S + 2 * S
    np.testing.assert_array_equal(a[~grey], x[~grey])
    np.testing.assert_array_equal(augment(x, _only(cutout_prob=0.0)).numpy(), x)
