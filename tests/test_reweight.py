"""Re-weighting by a face property (``reweight="sharpness"``): REAL and FAKE training examples
get loss weights under which their sharpness distributions agree, no pixel changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dfd.training.augment import blur, sharpness
from dfd.training.config import AugmentConfig, TrainConfig
from dfd.training.reweight import PropertyWeights, apply_weights, example_property, fit_weights
from tests.test_augment_robust import _faces

S = 32


def _values(n_real=3000, n_fake=2000, shift=0.8, seed=0):
    """Log-sharpness-like values: FAKE lower (blurrier) than REAL by ``shift``."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    v = np.r_[rng.normal(5.0, 1.0, n_real), rng.normal(5.0 - shift, 1.0, n_fake)]
    return y, v


def _weighted_hist(v, w, edges):
    h = np.bincount(np.searchsorted(edges, v, side="right"), weights=w, minlength=len(edges) + 1)
    return h / h.sum()


def test_weights_make_the_class_distributions_agree():
    y, v = _values()
    fitted = fit_weights(y, v, bins=20)
    w = fitted.weight_of(y, v)
    assert fitted.cue_auc == pytest.approx(roc_auc_score(y, v))
    assert fitted.cue_auc < 0.35  # the cue separates the classes before
    assert abs(fitted.cue_auc_weighted - 0.5) < 0.02
    assert abs(roc_auc_score(y, v, sample_weight=w) - 0.5) < 0.02
    # weighted, both classes fill the same bins in the same shares
    edges = np.array(fitted.edges)
    np.testing.assert_allclose(_weighted_hist(v[y == 0], w[y == 0], edges),
                               _weighted_hist(v[y == 1], w[y == 1], edges), atol=1e-9)
    # each class keeps a mean weight of 1, none above 1 / overlap
    for c in (0, 1):
        assert w[y == c].mean() == pytest.approx(1.0)
    assert w.max() <= 1 / fitted.overlap + 1e-9 and w.min() >= 0
    assert 0.5 < fitted.overlap < 0.8 and 0.5 < fitted.ess_real < 1 and 0.5 < fitted.ess_fake < 1
    assert (fitted.examples_real, fitted.examples_fake) == (3000, 2000)


def test_classes_that_already_agree_keep_weight_one():
    y, v = _values(shift=0.0, n_real=20000, n_fake=20000)
    fitted = fit_weights(y, v, bins=10)
    assert fitted.overlap > 0.97
    np.testing.assert_allclose(fitted.real + fitted.fake, 1.0, atol=0.08)
    assert abs(fitted.cue_auc - 0.5) < 0.02


def test_item_weights_give_each_source_its_share():
    """Two sources, the small one sharp with the opposite cue: with each (source, class)
    given its batch share, the weights balance the mixture the sampler draws, not the raw
    counts."""
    rng = np.random.default_rng(1)
    ya, va = _values(4000, 4000, shift=1.0, seed=2)  # big source, FAKE blurrier
    yb = np.r_[np.zeros(200, int), np.ones(200, int)]
    vb = np.r_[rng.normal(8.0, 0.5, 200), rng.normal(8.6, 0.5, 200)]  # small, FAKE sharper
    y, v = np.r_[ya, yb], np.r_[va, vb]
    item = np.r_[np.full(8000, 0.5 / 4000), np.full(400, 0.5 / 200)]  # mix a=0.5, b=0.5
    fitted = fit_weights(y, v, item_weight=item, bins=20)
    w = fitted.weight_of(y, v) * item
    assert abs(roc_auc_score(y, v, sample_weight=w) - 0.5) < 0.02
    assert abs(fitted.cue_auc_weighted - 0.5) < 0.02
    raw = fit_weights(y, v, bins=20)  # fitted on the raw counts: the small source's cue stays
    assert abs(roc_auc_score(y, v, sample_weight=raw.weight_of(y, v) * item) - 0.5) > 0.04


@pytest.mark.parametrize("kw, match", [
    (dict(y=[0, 0, 0], v=[1.0, 2.0, 3.0]), "0 FAKE"),
    (dict(y=[0, 1, 0, 1], v=[1.0, np.nan, 2.0, 3.0]), "finite"),
    (dict(y=[0, 0, 1, 1], v=[1.0, 1.1, 5.0, 5.1], bins=4), "do not overlap"),
    (dict(y=[0, 1], v=[1.0, 2.0], bins=1), "reweight_bins"),
])
def test_bad_input_says_what_was_wrong(kw, match):
    y, v = kw.pop("y"), kw.pop("v")
    with pytest.raises(ValueError, match=match):
        fit_weights(y, v, **kw)


def test_property_is_log_sharpness_and_clips_skip_padding():
    x = _faces(3, size=S)
    x[1] = blur(x[1], 1.5).numpy()
    want = np.log1p(sharpness(x).numpy())
    np.testing.assert_allclose(example_property(x).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(example_property({"face": x, "landmarks": 0}).numpy(), want,
                               rtol=1e-6)
    clips = {"faces": np.stack([x, x[[1, 1, 0]]]), "mask": np.array([[1, 1, 0], [1, 0, 0]], bool)}
    s = sharpness(x).numpy()
    got = example_property(clips, "clips").numpy()
    np.testing.assert_allclose(got, np.log1p([(s[0] + s[1]) / 2, s[1]]), rtol=1e-5)


def test_weights_are_applied_in_order_and_round_trip(tmp_path):
    import tensorflow as tf

    x = _faces(10, size=S, seed=3)
    for i in range(10):  # FAKE faces (5-9) a little blurrier than REAL ones (0-4)
        x[i] = blur(x[i], 0.5 + 0.2 * (i % 5) + 0.3 * (i >= 5)).numpy()
    y = np.r_[np.zeros(5), np.ones(5)].astype(np.float32)
    v = example_property(x).numpy()
    fitted = fit_weights(y.astype(int), v, bins=3)
    ds = tf.data.Dataset.from_tensor_slices((x, y, np.full(10, 2.0, np.float32)))
    out = list(apply_weights(ds, fitted).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([o[0] for o in out]), x)  # pixels and order kept
    np.testing.assert_allclose([o[2] for o in out], 2.0 * fitted.weight_of(y, v), rtol=1e-5)
    path = tmp_path / "reweight.json"
    path.write_text(json.dumps(fitted.to_dict()))
    assert PropertyWeights(**json.loads(path.read_text())) == fitted


@pytest.mark.parametrize("bad, match", [
    (dict(reweight="blur"), "reweight"),
    (dict(reweight="sharpness", fakes="sbi"), "fakes='sbi'"),
    (dict(reweight="sharpness", reweight_bins=1), "reweight_bins"),
])
def test_config_refuses_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def _graded_shards(root, n=24):
    """Tiny shards whose FAKE faces are blurrier than the REAL ones, sharpness graded."""
    from data_prep.shard_writer import ShardWriter
    from dfd import schema

    faces = _faces(n, size=S, seed=5)
    with ShardWriter(root, "train", max_records=64) as writer:
        for i in range(n):
            label = i % 2
            face = blur(faces[i], (0.4 if label else 0.2) + 0.05 * i).numpy()
            writer.add(schema.FaceRecord(video_id=f"v{i:03d}.mp4", label=label,
                                         faces=[schema.encode_png(face)], frame_indices=[0],
                                         group=f"g{i // 2}"))
    schema.write_index(root, writer.committed)
    return root


def test_training_run_weights_its_examples_and_saves_the_fit(tmp_path):
    from dfd.training import train
    from dfd.training.data import make_dataset, measure_weights

    shards = _graded_shards(tmp_path / "s")
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), model="tests.test_training:tiny_model",
                      train=[str(shards)], face_size=S, batch_size=8, epochs=1,
                      class_balance="none", augment=AugmentConfig(enabled=False),
                      tensorboard=False, patience=None, reweight="sharpness", reweight_bins=4)
    fitted = measure_weights(cfg)
    assert fitted.examples_real == fitted.examples_fake == 12 and fitted.cue_auc < 0.4
    assert abs(fitted.cue_auc_weighted - 0.5) < abs(fitted.cue_auc - 0.5)
    x, y, w = next(iter(make_dataset(cfg, training=True).as_numpy_iterator()))
    np.testing.assert_allclose(w, fitted.weight_of(y.astype(int), example_property(x).numpy()),
                               rtol=1e-5)
    assert w.std() > 0
    plain = next(iter(make_dataset(cfg.replace(reweight="none"), True).as_numpy_iterator()))
    np.testing.assert_array_equal(plain[0], x)  # the same examples, pixels untouched
    np.testing.assert_array_equal(plain[2], 1.0)
    train(cfg)
    saved = json.loads((tmp_path / "run" / "reweight.json").read_text())
    assert PropertyWeights(**saved) == fitted


def test_cli_flags_set_the_reweighting(tmp_path):
    import argparse

    from dfd.config import load_config, save_config
    from dfd_app.cli.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--train", "x", "--reweight", "sharpness",
                                              "--reweight-bins", "12"]))
    assert (cfg.reweight, cfg.reweight_bins) == ("sharpness", 12)
    assert load_config(TrainConfig, save_config(cfg, tmp_path / "c.json")) == cfg
    assert config_from_args(parser.parse_args(["--train", "x"])).reweight == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--train", "x", "--reweight", "blur"])


def test_self_blended_fakes_keep_the_weight_of_their_slot(tmp_path):
    from dfd.training.data import make_dataset, measure_weights

    shards = _graded_shards(tmp_path / "s")
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), train=[str(shards)], face_size=S,
                      batch_size=8, class_balance="none", augment=AugmentConfig(enabled=False),
                      fakes="both", sbi_ratio=1.0, reweight="sharpness", reweight_bins=4)
    fitted = measure_weights(cfg)
    x, y, w = next(iter(make_dataset(cfg, training=True).as_numpy_iterator()))
    real = y < 0.5
    assert 0 < real.sum() < len(y)
    np.testing.assert_allclose(w[real], fitted.weight_of(np.zeros(real.sum(), int),
                                                         example_property(x[real]).numpy()),
                               rtol=1e-5)
    gap = np.abs(w[~real][:, None] - np.array(fitted.fake)[None]).min(axis=1)
    assert (gap < 1e-5).all()  # each fake carries a FAKE bin's weight


def test_no_example_sits_on_a_bin_edge():
    """Quantile edges of few examples fall on the examples themselves; a figure that differs
    in the last bit in the graph would then change bins. Edges lie half-way between."""
    y, v = np.arange(24) % 2, np.arange(24, dtype=float)
    fitted = fit_weights(y, v, bins=4)
    assert np.abs(v[:, None] - np.array(fitted.edges)[None]).min() == pytest.approx(0.5)
    np.testing.assert_array_equal(fitted.weight_of(y, v), fitted.weight_of(y, v + 1e-6))
