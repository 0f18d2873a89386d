"""The temporal model: masking, one pooling rule, preprocessing inside, saving, training end to end.

A tiny injected CNN (two convs, no BN) keeps everything fast; full-size backbones are tested
in test_temporal_backbones.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from temporal_tf import model as tm

FACE = 32


def tiny_cnn(bn: bool = False):
    import keras
    from keras import layers

    inp = keras.Input((FACE, FACE, 3))
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    if bn:
        x = layers.BatchNormalization()(x)
    x = layers.Conv2D(8, 3, strides=2)(x)
    return keras.Model(inp, x, name="tiny_cnn")


def build(**kw):
    kw.setdefault("backbone_model", tiny_cnn())
    kw.setdefault("face_size", FACE)
    kw.setdefault("lstm_units", 6)
    kw.setdefault("clip_len", 8)
    return tm.build_temporal_model(**kw)


def clip(rng, n_valid, clip_len, size=40, batch=1):
    faces = rng.integers(0, 256, (batch, clip_len, size, size, 3), dtype=np.uint8)
    mask = np.zeros((batch, clip_len), bool)
    mask[:, :n_valid] = True
    return faces, mask


def run(model, faces, mask, training=False):
    return np.asarray(model({"faces": faces, "mask": mask}, training=training))


def pooled(model, faces, mask, training=False):
    """The clip features the head sees. "Must differ" checks look here, not at P(fake): a
    freshly initialised head sits within 1e-5 of 0.5 whatever its input."""
    import keras

    sub = keras.Model(model.input, model.get_layer("dropout").output)
    return np.asarray(sub({"faces": faces, "mask": mask}, training=training))


def test_lstm_has_bias_and_head_is_float32():
    model = build()
    lstm = model.get_layer("lstm")
    assert lstm.use_bias
    bias = [w for w in lstm.weights if w.name == "bias"]
    assert len(bias) == 1 and tuple(bias[0].shape) == (4 * 6,)
    assert model.output.dtype == "float32"
    assert model.get_layer("backbone").__class__.__name__ == "TimeDistributed"


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padded_garbage_frames_change_nothing(pooling):
    import keras

    keras.utils.set_random_seed(0)  # fixed weights: the "would change" margin is seen, not luck
    rng = np.random.default_rng(0)
    long = build(pooling=pooling, clip_len=8, dropout=0.0)
    short = build(pooling=pooling, clip_len=5, dropout=0.0)
    short.set_weights(long.get_weights())  # no weight depends on T
    faces, mask = clip(rng, 5, 8, batch=2)
    garbage = faces.copy()
    garbage[:, 5:] = rng.integers(0, 256, garbage[:, 5:].shape, dtype=np.uint8)
    ref = run(short, faces[:, :5], np.ones((2, 5), bool))
    np.testing.assert_allclose(run(long, faces, mask), ref, atol=1e-5)
    np.testing.assert_allclose(run(long, garbage, mask), ref, atol=1e-5)
    # the masked steps would change the output if they were used
    feats = pooled(short, faces[:, :5], np.ones((2, 5), bool))
    assert np.abs(pooled(long, garbage, np.ones((2, 8), bool)) - feats).max() > 1e-2


def test_last_and_mean_pooling_differ():
    import keras

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    last = build(pooling="last", dropout=0.0)
    mean = build(pooling="mean", dropout=0.0)
    mean.set_weights(last.get_weights())
    faces, mask = clip(rng, 6, 8)
    assert np.abs(pooled(last, faces, mask) - pooled(mean, faces, mask)).max() > 1e-3


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_training_and_inference_use_one_pooling_rule(pooling):
    import keras

    keras.utils.set_random_seed(2)  # dropout masks and initial weights fixed
    rng = np.random.default_rng(2)
    model = build(pooling=pooling, dropout=0.0)
    faces, mask = clip(rng, 6, 8, batch=3)
    inference = run(model, faces, mask, training=False)
    np.testing.assert_allclose(run(model, faces, mask, training=True), inference, atol=1e-6)
    np.testing.assert_allclose(model.predict({"faces": faces, "mask": mask}, verbose=0),
                               inference, atol=1e-6)
    # with dropout on, the training graph does differ (so the check above can fail)
    noisy = build(pooling=pooling, dropout=0.5)
    noisy.set_weights(model.get_weights())
    ref = pooled(model, faces, mask)
    np.testing.assert_allclose(pooled(model, faces, mask, training=True), ref, atol=1e-6)
    assert np.abs(pooled(noisy, faces, mask, training=True) - ref).max() > 1e-3
    np.testing.assert_allclose(pooled(noisy, faces, mask), ref, atol=1e-6)
    np.testing.assert_allclose(run(noisy, faces, mask), inference, atol=1e-6)


@pytest.mark.parametrize("kind", ["caffe", "torch"])
def test_preprocessing_inside_the_model(kind):
    import keras
    import tensorflow as tf

    model = build(preprocessing=kind)
    prep = model.get_layer("preprocess")
    rng = np.random.default_rng(3)
    same = rng.integers(0, 256, (1, 2, FACE, FACE, 3), dtype=np.uint8)
    got = np.asarray(prep(same))
    x = same.astype("float32")
    if kind == "caffe":
        want = keras.applications.resnet.preprocess_input(x.copy())
    else:
        want = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got, want, atol=1e-3)
    big = rng.integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
    resized = tf.image.resize(big[0].astype("float32"), [FACE, FACE], antialias=True).numpy()
    norm = prep.layer.get_layer("color_norm")
    np.testing.assert_allclose(np.asarray(prep(big))[0], np.asarray(norm(resized)), atol=1e-3)
    assert prep.trainable_weights == []


def test_backbone_freezing_keeps_preprocessing_and_batchnorm_frozen():
    from keras import layers

    model = build(backbone_model=tiny_cnn(bn=True))
    n_head = len(model.get_layer("lstm").trainable_weights) + 2
    tm.set_backbone_trainable(model, False)
    assert len(model.trainable_weights) == n_head
    tm.set_backbone_trainable(model, True)
    bns = [lay for lay in model.get_layer("backbone").layer._flatten_layers()
           if isinstance(lay, layers.BatchNormalization)]
    assert bns and not any(b.trainable for b in bns)
    assert len(model.trainable_weights) == n_head + 4  # two conv kernels + biases
    model.trainable = True  # even a blanket unfreeze leaves the colour conv frozen
    assert model.get_layer("preprocess").trainable_weights == []


def test_mixed_precision_head_stays_float32():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build()
        assert model.get_layer("lstm").compute_dtype == "float16"
        assert model.get_layer("p_fake").compute_dtype == "float32"
        assert model.output.dtype == "float32"
        faces, mask = clip(np.random.default_rng(4), 3, 8)
        assert run(model, faces, mask).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_keras_file_round_trip_and_dict_config(tmp_path):
    import keras

    model = tm.build_temporal_model({"backbone_model": tiny_cnn(), "face_size": FACE,
                                     "clip_len": 4, "lstm_units": 3, "pooling": "mean"})
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # built-in layers only: no custom_objects
    faces, mask = clip(np.random.default_rng(5), 3, 4, batch=2)
    np.testing.assert_allclose(run(loaded, faces, mask), run(model, faces, mask), atol=1e-6)


def test_model_name_and_argument_errors():
    assert tm.model_name("ResNeXt101_32x8d") == "temporal-resnext101"
    with pytest.raises(ValueError, match="'max'"):
        build(pooling="max")
    with pytest.raises(ValueError, match="clip_len must be a positive int, got 0"):
        build(clip_len=0)
    with pytest.raises(ValueError, match="dropout"):
        build(dropout=1.0)
    with pytest.raises(ValueError, match="'vgg'"):
        tm.build_temporal_model(backbone="vgg")


# ------------------------------------------------------------------ end to end


def write_clip_shards(root, n_faces=(3, 9, 20, 5), size=FACE):
    """Tiny shards: fakes are bright noise, reals dark noise; record lengths vary."""
    from data_prep import shard_writer
    from dfd import schema

    rng = np.random.default_rng(7)
    with shard_writer.ShardWriter(root, "part", max_records=3) as w:
        for i, n in enumerate(n_faces):
            label = i % 2
            lo = 128 if label else 0
            faces = [schema.encode_png(rng.integers(lo, lo + 128, (size, size, 3), dtype=np.uint8))
                     for _ in range(n)]
            w.add(schema.FaceRecord(video_id=f"v{i}.mp4", label=label, faces=faces,
                                    frame_indices=list(range(0, 3 * n, 3))))
    shard_writer.build_index(root)
    return root


def test_multi_clip_sampling_covers_long_records(tmp_path):
    from dfd.inference import clips as predict

    shards = write_clip_shards(tmp_path / "shards")
    els = list(predict.multi_clip_dataset(shards, clip_len=4, max_clips=3, face_size=FACE))
    by_vid = {}
    for el in els:
        by_vid.setdefault(el["video_id"].numpy().decode(), []).append(el)
    assert {v: len(c) for v, c in by_vid.items()} == {"v0.mp4": 1, "v1.mp4": 3, "v2.mp4": 3,
                                                       "v3.mp4": 2}
    short = by_vid["v0.mp4"][0]  # 3 faces, T=4: padded and masked
    assert short["mask"].numpy().tolist() == [True, True, True, False]
    assert short["frame_indices"].numpy().tolist() == [0, 3, 6, -1]
    assert not short["faces"].numpy()[3].any()
    long = [c["frame_indices"].numpy() for c in by_vid["v2.mp4"]]  # 20 faces, 3 segments
    assert [f[0] for f in long] == [0, 18, 39]  # segments start at faces 0, 6, 13
    assert all(np.all(np.diff(f) > 0) for f in long) and long[-1][-1] <= 57


def test_train_predict_export_end_to_end(tmp_path):
    import keras

    from dfd import export, scores
    from dfd.inference import clips as predict
    from dfd.inference import loading
    from dfd.training import Phase, TrainConfig, train

    shards = str(write_clip_shards(tmp_path / "shards"))
    cfg = TrainConfig(
        run_dir=str(tmp_path / "run"), model="temporal", train=[shards], val=[shards],
        input_kind="clips", clip_len=4, face_size=FACE, batch_size=2, steps_per_epoch=2,
        validation_steps=2, loss="bce", class_balance="none", tensorboard=False, patience=None,
        augment={"enabled": False},
        phases=[Phase(1, 1e-3, trainable_backbone=False), Phase(1, 1e-4, True)],
    )
    result = train(cfg, model_fn=lambda c: build(clip_len=c.clip_len, dropout=0.2))
    assert result.epochs_run == 2
    model = keras.models.load_model(result.last_model)

    clips, videos = predict.predict_shards(model, shards, max_clips=3, batch_size=3,
                                           model_name="temporal-tiny")
    assert list(clips.columns) == predict.CLIP_COLUMNS
    assert len(clips) == 1 + 3 + 3 + 2
    assert list(videos.columns) == scores.VIDEO_COLUMNS + [scores.SOURCE_COLUMN]
    assert sorted(videos["video_id"]) == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    assert videos.set_index("video_id")["label"].to_dict() == {"v0.mp4": 0, "v1.mp4": 1,
                                                              "v2.mp4": 0, "v3.mp4": 1}
    assert videos.set_index("video_id")["n_faces"].to_dict()["v0.mp4"] == 3
    assert (videos["model"] == "temporal-tiny").all() and (videos["status"] == "ok").all()
    v2 = clips[clips.video_id == "v2.mp4"]["p_fake"].mean()
    assert videos.set_index("video_id").loc["v2.mp4", "p_fake"] == pytest.approx(v2)
    path = scores.write_table(videos, tmp_path / "videos.csv")
    assert scores.read_table(path)["p_fake"].tolist() == pytest.approx(videos["p_fake"].tolist())

    out = export.export_savedmodel(model, tmp_path / "export", face_size=FACE)
    scorer = loading.scorer_from_savedmodel(out)
    faces, mask = clip(np.random.default_rng(8), 3, 4, size=FACE, batch=2)
    np.testing.assert_allclose(scorer(faces, mask), run(model, faces, mask).reshape(-1),
                               atol=1e-5)


def test_undecodable_faces_lose_clips_not_the_batch(tmp_path):
    from data_prep import shard_writer
    from dfd import schema
    from dfd.inference import clips as predict

    rng = np.random.default_rng(0)
    with shard_writer.ShardWriter(tmp_path, "part", max_records=2) as w:
        for i, n in enumerate((9, 5, 3)):
            faces = [schema.encode_png(rng.integers(0, 255, (FACE, FACE, 3), dtype=np.uint8))
                     for _ in range(n)]
            if i == 0:
                faces[4] = b"not an image"  # spoils the middle one of its 3 clips
            if i == 2:
                faces = [b"not an image"] * n  # spoils its only clip
            w.add(schema.FaceRecord(video_id=f"v{i}", label=i % 2, faces=faces,
                                    frame_indices=list(range(n))))
    shard_writer.build_index(tmp_path)
    model = build(clip_len=3, dropout=0.0)
    clips, videos = predict.predict_shards(model, tmp_path, max_clips=3, batch_size=2)
    assert clips.groupby("video_id").size().to_dict() == {"v0": 2, "v1": 2}
    v = videos.set_index("video_id")
    assert v.loc["v0", "status"] == "ok" and np.isfinite(v.loc["v0", "p_fake"])
    assert v.loc["v0", "error"] == "1 of 3 clips could not be decoded; scored on the rest"
    assert v.loc["v1", "error"] == ""
    assert v.loc["v2", "status"] == "error" and np.isnan(v.loc["v2", "p_fake"])
    assert v.loc["v2", "label"] == 0 and "no clip" in v.loc["v2", "error"]


def test_clip_scoring_keeps_one_source(tmp_path):
    from data_prep import shard_writer
    from dfd import schema
    from dfd.inference import clips as predict

    rng = np.random.default_rng(1)
    with shard_writer.ShardWriter(tmp_path, "part", max_records=2) as w:
        for i, src in enumerate(("csv:dfdc_faces", "csv:ffpp_faces", "csv:ffpp_faces")):
            faces = [schema.encode_png(rng.integers(0, 255, (FACE, FACE, 3), dtype=np.uint8))
                     for _ in range(4)]
            w.add(schema.FaceRecord(video_id=f"v{i}", label=i % 2, faces=faces, source=src,
                                    frame_indices=list(range(4))))
    shard_writer.build_index(tmp_path)
    model = build(clip_len=3, dropout=0.0)
    every_clip, every = predict.predict_shards(model, tmp_path, max_clips=2, batch_size=2)
    clips, videos = predict.predict_shards(model, tmp_path, max_clips=2, batch_size=2,
                                           only_source="ffpp_faces")
    assert sorted(videos["video_id"]) == ["v1", "v2"] and set(videos["source"]) == {
        "csv:ffpp_faces"}
    assert (videos["status"] == "ok").all() and not videos["error"].astype(bool).any()
    want = every.set_index("video_id").loc[["v1", "v2"], "p_fake"].to_numpy()
    np.testing.assert_allclose(videos.set_index("video_id").loc[["v1", "v2"], "p_fake"], want,
                               atol=1e-6)
    assert len(every_clip) == 6 and len(clips) == 4
