"""Self-blended fakes: the mask stays in the face box, fakes differ from their real face only
inside it, labels are FAKE, seeds repeat; the training pipeline's --fakes sbi / both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfd.training.config import AugmentConfig, SBIConfig, TrainConfig
from dfd.training.sbi import DEFAULT_BOX, face_mask, pair_batch, replace_batch, self_blend

S = 64
LM = np.array([[0.36, 0.40], [0.64, 0.41], [0.50, 0.55], [0.39, 0.68], [0.61, 0.69]], np.float32)
BOX = np.array([0.18, 0.15, 0.82, 0.92], np.float32)


def _faces(n=4, size=S, seed=0):
    """Textured faces: smooth colour gradients plus noise, so every change shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 1 - xx], -1) * 160 + 40
    return np.clip(base[None] + rng.normal(0, 12, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _lm(n, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    lm = np.repeat(LM[None], n, 0) + rng.uniform(-jitter, jitter, (n, 5, 2)).astype(np.float32)
    return lm, np.repeat(BOX[None], n, 0)


def _outside(box, size=S):
    """Pixels whose centres lie outside ``box`` ([0, 1] coordinates)."""
    c = np.arange(size)
    x0, y0, x1, y1 = np.asarray(box) * size
    inside = ((c[None, :] >= x0) & (c[None, :] <= x1)) & ((c[:, None] >= y0) & (c[:, None] <= y1))
    return ~inside


@pytest.mark.parametrize("seed", [(0, 1), (5, 9), (123, 4)])
def test_mask_lies_inside_the_face_box_and_covers_the_face(seed):
    lm, box = _lm(6, jitter=0.03, seed=seed[0])
    mask = face_mask(lm, box, S, seed).numpy()
    assert mask.shape == (6, S, S) and mask.min() >= 0 and mask.max() <= 1
    out = _outside(BOX)
    for m in mask:
        assert m[out].max() == 0.0
        assert (m > 0.5).mean() > 0.1  # a face-sized region, not a speck
        # the keypoints themselves are inside the face region
        for x, y in LM * S:
            assert m[int(round(y)), int(round(x))] > 0


def test_mask_without_landmarks_falls_back_to_the_box():
    absent = -np.ones((2, 5, 2), np.float32)
    box = np.array([[0.3, 0.2, 0.7, 0.8], [-1, -1, -1, -1]], np.float32)
    mask = face_mask(absent, box, S, (1, 1)).numpy()
    assert mask[0][_outside(box[0])].max() == 0 and (mask[0] > 0.5).mean() > 0.05
    assert mask[1][_outside(DEFAULT_BOX)].max() == 0 and (mask[1] > 0.5).mean() > 0.15


@pytest.mark.parametrize("move", [False, True])
def test_fake_differs_from_the_real_face_only_inside_the_mask(move):
    faces = _faces(6)
    lm, box = _lm(6, jitter=0.02)
    blend = self_blend(faces, lm, box, (3, 7), SBIConfig(move_target=move))
    reals, fakes, w = blend.real.numpy(), blend.fake.numpy(), blend.weight.numpy()
    assert fakes.shape == reals.shape == faces.shape and fakes.dtype == reals.dtype == np.uint8
    for f, r, m in zip(fakes, reals, w):
        np.testing.assert_array_equal(f[m == 0], r[m == 0])
        diff = np.abs(f.astype(int) - r).max(-1)
        assert (diff[m > 0.2] > 0).mean() > 0.5  # and it does differ inside
    # the REAL example is the face itself, or (move_target) moved a little by its own shift
    if move:
        assert all(0 < np.abs(r.astype(int) - x).mean() < 20 for r, x in zip(reals, faces))
    else:
        np.testing.assert_array_equal(reals, faces)


def test_resampling_blur_does_not_tell_a_fake_from_its_real():
    """Both the REAL example and the fake's source are resampled once: with no colour or
    sharpness change, the fake's inner face is as often sharper as blurrier than its real's
    (a source resampled against an untouched target was blurrier in 98% of pairs)."""
    n = 48
    faces = _faces(n, seed=4)
    lm, box = _lm(n, jitter=0.02, seed=4)
    plain = SBIConfig(sharpness=(0.0, 0.0), rgb_shift=0, hue=0, saturation=0, value=0,
                      brightness=0, contrast=0, blend_ratios=(1.0,), move_target=True)
    blend = self_blend(faces, lm, box, (5, 5), plain)
    blurrier = []
    for f, r, m in zip(blend.fake.numpy(), blend.real.numpy(), blend.weight.numpy()):
        core = m >= 0.99
        core = core[:, 1:] & core[:, :-1]
        blurrier.append(_step(f, core) < _step(r, core))
    assert 0.25 <= np.mean(blurrier) <= 0.75, np.mean(blurrier)
    # the published recipe (move_target=False, the default): the REAL example is the face, the
    # resampled source makes the fake's inner face the blurrier in (nearly) every pair
    still = SBIConfig(**{**plain.__dict__, "move_target": False})
    blend = self_blend(faces, lm, box, (5, 5), still)
    np.testing.assert_array_equal(blend.real.numpy(), faces)
    blurrier = []
    for f, r, m in zip(blend.fake.numpy(), faces, blend.weight.numpy()):
        core = m >= 0.99
        core = core[:, 1:] & core[:, :-1]
        blurrier.append(_step(f, core) < _step(r, core))
    assert np.mean(blurrier) > 0.9, np.mean(blurrier)


def test_downscaled_sources_lose_resolution_inside_the_mask_only():
    from dfd.training.sbi import downscaled, source_copy

    faces = _faces(6)
    x = faces.astype(np.float32) / 255
    d = downscaled(x, (2, 4), (5, 1)).numpy()
    # each image is one of the two: blocks of 2 or 4 pixels enlarged back, far smoother
    hf = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert all(hf(d[i]) < 0.5 * hf(x[i]) for i in range(6))
    for i in range(6):
        err = [np.abs(d[i] - _down_up(x[i], f)).max() for f in (2, 4)]
        assert min(err) < 1e-5, err
    # every source is downscaled with probability 1, none with 0
    lm, box = _lm(6)
    plain = SBIConfig(sharpness=(0.0, 0.0), rgb_shift=0, hue=0, saturation=0, value=0,
                      brightness=0, contrast=0, shift=0, scale=0)
    always = SBIConfig(**{**plain.__dict__, "downscale_prob": 1.0, "downscale_factors": (4,)})
    src = source_copy(faces, (9, 9), always).numpy()
    assert np.abs(src - np.stack([_down_up(f, 4) for f in x])).max() < 0.02
    np.testing.assert_allclose(source_copy(faces, (9, 9), plain).numpy(), x, atol=0.02)
    blend = self_blend(faces, lm, box, (2, 2), always)
    fakes, w = blend.fake.numpy(), blend.weight.numpy()
    np.testing.assert_array_equal(blend.real.numpy(), faces)  # shift and scale 0: unmoved
    for f, r, m in zip(fakes, faces, w):
        np.testing.assert_array_equal(f[m == 0], r[m == 0])
        core = m >= 0.8 * m.max()
        core = core[:, 1:] & core[:, :-1]  # both pixels of a horizontal step inside
        assert _step(f, core) < 0.9 * _step(r, core)  # the inner face is the blurrier


def test_keep_range_maps_bright_sources_back_instead_of_clipping():
    from dfd.training.sbi import source_copy

    # bright faces (none at 255 yet): a +10% brightness and a x1.2 value push their
    # highlights past 255
    faces = np.round(_faces(16) * 0.6 + 100).astype(np.uint8)
    assert faces.max() < 255
    bright = dict(sharpness=(0.0, 0.0), rgb_shift=0, hue=0, saturation=0, value=0.2,
                  brightness=0.1, contrast=0, shift=0, scale=0)
    clipped = source_copy(faces, (7, 3), SBIConfig(**bright)).numpy()
    kept = source_copy(faces, (7, 3), SBIConfig(**bright, keep_range=True)).numpy()
    assert (clipped >= 1.0).mean() > 0.01  # the published recipe flattens the highlights
    # kept: only the brightest value of an image reaches the bound (and its ties)
    assert (kept >= 1.0 - 1e-6).sum(axis=(1, 2, 3)).max() <= 3
    assert kept.min() >= 0.0 and kept.max() <= 1.0
    # a linear map per image: the values keep their order and relative spacing
    slopes = []
    for c, k in zip(clipped, kept):
        inside = c < 0.999  # where the clip did nothing
        fit = np.polyfit(c[inside], k[inside], 1)
        assert np.abs(np.polyval(fit, c[inside]) - k[inside]).max() < 1e-4
        slopes.append(fit[0])
    assert max(slopes) < 1.0 + 1e-4 and min(slopes) < 0.95  # squeezed where it left the range
    # a change that stays in range is the same either way; the default draws are unchanged
    calm = dict(bright, value=0.0, brightness=0.0)
    np.testing.assert_allclose(source_copy(_faces(3), (1, 1), SBIConfig(**calm)).numpy(),
                               source_copy(_faces(3), (1, 1),
                                           SBIConfig(**calm, keep_range=True)).numpy(), atol=1e-6)
    assert SBIConfig().keep_range is False
    # an image wholly out of range is flattened onto the bound, never inverted
    from dfd.training.sbi import _squeezed

    over = _squeezed(np.linspace(1.1, 1.3, 12, dtype=np.float32).reshape(1, 2, 2, 3)).numpy()
    np.testing.assert_array_equal(over, np.ones_like(over))


def _step(img, where):
    """Mean absolute horizontal step of ``img`` over the pixel pairs ``where``."""
    return np.abs(np.diff(img.astype(float), axis=1)).mean(-1)[where].mean()


def _down_up(img, f):
    """What ``downscaled`` should give for one image and factor ``f``, written plainly."""
    import tensorflow as tf

    s = img.shape[0]
    small = img[f // 2::f, f // 2::f]  # nearest neighbour: the pixel at each block's centre
    return tf.image.resize(small[None], [s, s], method="bilinear").numpy()[0]


def test_same_seed_same_fakes_other_seed_other_fakes():
    faces = _faces(3)
    lm, box = _lm(3)
    a = self_blend(faces, lm, box, (11, 2)).fake.numpy()
    b = self_blend(faces, lm, box, (11, 2)).fake.numpy()
    c = self_blend(faces, lm, box, (12, 2)).fake.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the three faces of one batch get different draws too
    assert not np.array_equal(a[0], a[1])


def test_pairs_are_labelled_fake_next_to_their_real_face():
    faces = _faces(3)
    lm, box = _lm(3)
    x = {"face": faces, "landmarks": lm, "crop_box": box}
    out, labels, weights = pair_batch(x, np.zeros(3, np.float32), np.ones(3, np.float32), (1, 2))
    out, labels = out.numpy(), labels.numpy()
    assert list(labels) == [0, 1, 0, 1, 0, 1] and out.shape == (6, S, S, 3)
    blend = self_blend(faces, lm, box, (1, 2))
    np.testing.assert_array_equal(out[0::2], blend.real.numpy())  # each real, moved
    np.testing.assert_array_equal(out[1::2], blend.fake.numpy())
    assert all(not np.array_equal(out[2 * i + 1], out[2 * i]) for i in range(3))
    assert np.asarray(weights).shape == (6,)


def test_replace_swaps_fakes_for_self_blends_of_the_batch_reals():
    faces = _faces(4)
    faces[1] = 250  # the shard's own FAKE faces: flat, unlike any real one
    faces[3] = 250
    lm, box = _lm(4)
    x = {"face": faces, "landmarks": lm, "crop_box": box}
    y = np.array([0, 1, 0, 1], np.float32)
    w = np.ones(4, np.float32)
    out, y2, _ = replace_batch(x, y, w, (4, 4), ratio=1.0)
    out = out.numpy()
    np.testing.assert_array_equal(out[[0, 2]], faces[[0, 2]])  # reals as they are
    moved, _, _ = replace_batch(x, y, w, (4, 4), ratio=1.0, cfg=SBIConfig(move_target=True))
    moved = moved.numpy()  # with move_target: moved copies, resampled once as the fakes are
    assert not np.array_equal(moved[[0, 2]], faces[[0, 2]])
    assert np.abs(moved[[0, 2]].astype(int) - faces[[0, 2]]).mean() < 20
    assert (out[[1, 3]] != 250).any(axis=(1, 2, 3)).all()  # both fakes replaced
    assert list(np.asarray(y2)) == [0, 1, 0, 1]
    kept, _, _ = replace_batch(x, y, w, (4, 4), ratio=0.0)
    np.testing.assert_array_equal(kept.numpy(), faces)
    # a batch without any REAL face keeps its fakes
    only_fake, _, _ = replace_batch(x, np.ones(4, np.float32), w, (4, 4), ratio=1.0)
    np.testing.assert_array_equal(only_fake.numpy(), faces)


def test_self_blend_checks_its_input():
    with pytest.raises(ValueError, match="uint8 faces"):
        self_blend(np.zeros((1, S, S, 3), np.float32), *_lm(1), (1, 1))


# ------------------------------------------------------------------ training pipeline


def _shards(out_dir: Path, n_real=6, n_fake=4, size=S):
    from data_prep.shard_writer import ShardWriter
    from dfd import schema

    real = _faces(n_real, size, seed=3)
    with ShardWriter(out_dir, "t", max_records=64) as w:
        for i in range(n_real):
            w.add(schema.FaceRecord(video_id=f"r{i}", label=0, faces=[schema.encode_png(real[i])],
                                    frame_indices=[0], landmarks=[LM if i % 3 else None],
                                    crop_boxes=[BOX if i % 3 else None]))
        for i in range(n_fake):
            flat = np.full((size, size, 3), 250, np.uint8)
            w.add(schema.FaceRecord(video_id=f"f{i}", label=1, faces=[schema.encode_png(flat)],
                                    frame_indices=[0]))
    schema.write_index(out_dir, w.committed)
    return real


def _cfg(tmp_path, **kw):
    base = dict(run_dir=str(tmp_path / "run"), train=[str(tmp_path / "shards")], face_size=S,
                batch_size=4, augment=AugmentConfig(enabled=False), shuffle_buffer=16,
                class_balance="none")
    base.update(kw)
    return TrainConfig(**base)


def test_fakes_sbi_trains_on_real_faces_and_their_self_blends(tmp_path):
    from dfd.training.data import make_dataset

    real = _shards(tmp_path / "shards")
    cfg = _cfg(tmp_path, fakes="sbi", class_balance="weights")
    xs, ys = [], []
    for x, y, w in make_dataset(cfg, training=True).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        assert np.all(w == 1.0)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert len(y) == 12 and list(y) == [0, 1] * 6  # each REAL face, then its fake
    assert not (x == 250).all(axis=(1, 2, 3)).any()  # the shards' own fakes are left out
    for i in range(0, 12, 2):
        r, f = x[i], x[i + 1]
        # the REAL example is a shard face moved a little (shift <= 3%, scale 1 -+ 5%); its
        # face box (the default one without landmarks) moves with it
        grow = np.array([-1, -1, 1, 1]) * 0.06
        out = _outside(BOX + grow) & _outside(np.asarray(DEFAULT_BOX) + grow)
        assert min(np.abs(r.astype(int) - face).mean() for face in real) < 20
        np.testing.assert_array_equal(f[out], r[out])  # the fake differs only in the face
        assert (f[~out] != r[~out]).any()


def test_fakes_both_replaces_a_share_of_the_fakes(tmp_path):
    from dfd.training.data import effective_counts, make_dataset

    _shards(tmp_path / "shards", n_real=8, n_fake=8)

    def fakes_seen(**kw):
        cfg = _cfg(tmp_path, batch_size=16, **kw)
        x, y, _ = next(iter(make_dataset(cfg, training=True).as_numpy_iterator()))
        assert sorted(y) == [0] * 8 + [1] * 8  # labels as in the shards
        flat = (x == 250).all(axis=(1, 2, 3))
        return int(flat[y == 1].sum())

    assert fakes_seen(fakes="real") == 8
    assert fakes_seen(fakes="both", sbi_ratio=1.0) == 0
    assert fakes_seen(fakes="both", sbi_ratio=0.0) == 8
    from dfd.training.data import LabelCounts

    c = LabelCounts(real=8, fake=3)
    assert effective_counts(_cfg(tmp_path, fakes="sbi"), c) == LabelCounts(8, 8)
    assert effective_counts(_cfg(tmp_path, fakes="both"), c) == c


@pytest.mark.parametrize("bad, match", [
    ({"fakes": "gan"}, "fakes"), ({"sbi_ratio": 1.5}, "sbi_ratio"),
    ({"fakes": "sbi", "input_kind": "clips"}, "needs input_kind 'frames'"),
    ({"sbi": {"feather": (0.3, 0.1)}}, "sbi.feather"),
    ({"sbi": {"blend_ratios": (0.0,)}}, "blend_ratios"),
    ({"sbi": {"downscale_prob": 1.5}}, "downscale_prob"),
    ({"sbi": {"downscale_factors": (1,)}}, "downscale_factors"),
    ({"sbi": {"mask": 1}}, r"sbi: unknown field\(s\) \['mask'\]"),
    ({"augment": {"jpg": 1}}, r"augment: unknown field\(s\) \['jpg'\]"),
])
def test_config_checks_the_sbi_options(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_cli_flags_set_the_fakes(tmp_path):
    import argparse

    from dfd.config import load_config, save_config
    from dfd_app.cli.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--train", "x", "--fakes", "both", "--sbi-ratio", "0.3"])
    cfg = config_from_args(args)
    assert cfg.fakes == "both" and cfg.sbi_ratio == 0.3 and cfg.sbi == SBIConfig()
    assert load_config(TrainConfig, save_config(cfg, tmp_path / "c.json")) == cfg
    assert config_from_args(parser.parse_args(["--train", "x"])).fakes == "real"
    cfg = config_from_args(parser.parse_args(
        ["--train", "x", "--fakes", "sbi", "--sbi", '{"downscale_prob": 0.5, "sharpness": [0, 1]}']))
    assert cfg.sbi.downscale_prob == 0.5 and cfg.sbi.sharpness == (0.0, 1.0)
    assert load_config(TrainConfig, save_config(cfg, tmp_path / "d.json")) == cfg


def test_training_with_sbi_on_real_faces_only(tmp_path, caplog):
    """The trainer counts one self-blended FAKE per REAL face: shards holding REAL faces
    only train with class weights (which need both classes) and a full epoch of steps."""
    from data_prep.shard_writer import ShardWriter
    from dfd import schema
    from dfd.training import train

    real = _faces(8, 32, seed=5)
    with ShardWriter(tmp_path / "shards", "t", max_records=64) as w:
        for i in range(8):
            w.add(schema.FaceRecord(video_id=f"r{i}", label=0, faces=[schema.encode_png(real[i])],
                                    frame_indices=[0], landmarks=[LM], crop_boxes=[BOX]))
    schema.write_index(tmp_path / "shards", w.committed)
    cfg = _cfg(tmp_path, fakes="sbi", class_balance="weights", face_size=32, epochs=1,
               model="tests.test_training:tiny_model", tensorboard=False, patience=None)
    with caplog.at_level("INFO", logger="dfd.training.trainer"):
        result = train(cfg)
    assert result.epochs_run == 1
    assert "fakes=sbi: 8 REAL, 8 FAKE examples, 4 steps per epoch" in caplog.text
    hist = (Path(cfg.run_dir) / "config.json").read_text()
    assert '"fakes": "sbi"' in hist
