"""The shared trainer: config round trip, augmentations, data pipeline, fit and custom loop,
resume after an interruption, two-phase training, run-dir artefacts, `dfd train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfd.config import load_config, save_config
from dfd.training.config import AugmentConfig, Phase, TrainConfig

SIZE = 32


# ------------------------------------------------------------------ helpers (used by
# test_multiworker too: keep importable without side effects)


def write_tiny_shards(out_dir, records=16, faces=3, size=SIZE, seed=0, prefix="train",
                      max_records=8):
    """Synthetic shards: FAKE faces are brighter than REAL ones, so a model can learn."""
    from data_prep.shard_writer import ShardWriter
    from dfd import schema

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    with ShardWriter(out_dir, prefix, max_records=max_records) as writer:
        for i in range(records):
            label = i % 2
            base = 150 if label else 70
            imgs = [
                np.clip(rng.normal(base, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                for _ in range(faces)
            ]
            writer.add(schema.FaceRecord(
                video_id=f"{prefix}{i:03d}.mp4", label=label,
                faces=[schema.encode_png(im) for im in imgs],
                frame_indices=list(range(0, faces * 5, 5)), group=f"g{i // 2}",
            ))
    schema.write_index(out_dir, writer.committed)
    return out_dir


def tiny_model(clip_len: int = 0, size: int = SIZE):
    """A tiny Keras model with a layer named "backbone" and a float32 P(fake) head."""
    import keras

    face = keras.Input((size, size, 3))
    h = keras.layers.Rescaling(1 / 255.0)(face)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    backbone = keras.Model(face, h, name="backbone")
    if clip_len:
        faces = keras.Input((clip_len, size, size, 3), name="faces")
        mask = keras.Input((clip_len,), name="mask", dtype="bool")
        h = keras.layers.TimeDistributed(backbone)(faces)
        h = keras.layers.GlobalAveragePooling1D()(h, mask=mask)
        out = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(h)
        return keras.Model({"faces": faces, "mask": mask}, out, name="tiny_clip")
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(backbone(face))
    return keras.Model(face, out, name="tiny")


def tiny_builder(cfg):
    return tiny_model(cfg.clip_len if cfg.input_kind == "clips" else 0, cfg.face_size)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return (write_tiny_shards(root / "train", records=16, seed=0, prefix="train"),
            write_tiny_shards(root / "val", records=8, seed=1, prefix="val"))


def small_config(tmp_path, shards, **kw):
    base = dict(
        run_dir=str(tmp_path / "run"), model="tests.test_training:tiny_model",
        train=[str(shards[0])], val=[str(shards[1])], face_size=SIZE, batch_size=8,
        epochs=2, learning_rate=0.01, augment=AugmentConfig(enabled=False),
        tensorboard=False, patience=None, shuffle_buffer=64,
    )
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ config


def test_config_round_trip(tmp_path):
    cfg = TrainConfig(train="a", val=["b"], phases=[Phase(1, 1e-3, False), Phase(2, 1e-4)],
                      augment=AugmentConfig(jpeg_quality=(30, 90), rotation=5.0))
    path = save_config(cfg, tmp_path / "config.json")
    back = load_config(TrainConfig, path)
    assert back == cfg
    assert isinstance(back.augment, AugmentConfig) and back.augment.jpeg_quality == (30, 90)
    assert isinstance(back.phases[0], Phase) and back.phases[0].trainable_backbone is False
    assert back.total_epochs == 3


@pytest.mark.parametrize("bad", [
    {"loss": "hinge"}, {"strategy": "tpu"}, {"input_kind": "video"}, {"batch_size": 0},
    {"model": "resnet"}, {"class_balance": "oversample"}, {"patience": 0},
    {"average_from": 0}, {"average_from": 11}, {"average_from": 2.5}, {"sam_rho": -0.05},
    {"sam_rho": float("nan")},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_augment_config_rejects_bad_quality():
    with pytest.raises(ValueError, match="jpeg_quality"):
        AugmentConfig(jpeg_quality=(90, 40))


# ------------------------------------------------------------------ augmentations


def _face(seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_flip_twice_is_identity_and_flip_mirrors():
    from dfd.training.augment import flip

    x = _face()
    once = flip(x).numpy()
    np.testing.assert_array_equal(once, x[:, ::-1])
    np.testing.assert_array_equal(flip(flip(x)).numpy(), x)
    clip = np.stack([_face(i) for i in range(3)])
    np.testing.assert_array_equal(flip(clip).numpy(), clip[:, :, ::-1])


def test_rotate_zoom_identity_and_change():
    import tensorflow as tf

    from dfd.training.augment import rotate_zoom

    x = _face()
    same = rotate_zoom(x, tf.constant(0.0), tf.constant(1.0)).numpy()
    np.testing.assert_array_equal(same, x)
    turned = rotate_zoom(x, tf.constant(0.2), tf.constant(1.1)).numpy()
    assert turned.shape == x.shape and turned.dtype == np.uint8
    assert np.mean(turned != x) > 0.5


def test_jpeg_and_brightness_change_pixels_keep_dtype():
    from dfd.training.augment import brightness_contrast, jpeg

    x = _face()
    j = jpeg(x, 30).numpy()
    assert j.shape == x.shape and j.dtype == np.uint8 and np.mean(j != x) > 0.5
    b = brightness_contrast(x, 0.1, 1.0).numpy()
    assert b.dtype == np.uint8 and b.astype(int).mean() > x.astype(int).mean()
    np.testing.assert_array_equal(brightness_contrast(x, 0.0, 1.0).numpy(), x)


@pytest.mark.parametrize("shape", [(SIZE, SIZE, 3), (4, SIZE, SIZE, 3)])
def test_augment_keeps_shape_dtype_and_changes_pixels(shape):
    import tensorflow as tf

    from dfd.training.augment import augment

    tf.random.set_seed(1)
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    cfg = AugmentConfig(jpeg_prob=1.0)
    out = augment(tf.constant(x), cfg).numpy()
    assert out.shape == x.shape and out.dtype == np.uint8
    assert np.mean(out != x) > 0.3
    off = augment(tf.constant(x), AugmentConfig(enabled=False)).numpy()
    np.testing.assert_array_equal(off, x)


def test_clip_frames_get_the_same_random_params():
    import tensorflow as tf

    from dfd.training.augment import augment

    frame = _face(3)
    clip = np.stack([frame] * 5)
    cfg = AugmentConfig(jpeg_prob=1.0, rotation=20.0, zoom=0.2)
    for seed in range(3):
        tf.random.set_seed(seed)
        out = augment(tf.constant(clip), cfg).numpy()
        assert not np.array_equal(out[0], frame)
        for t in range(1, 5):
            np.testing.assert_array_equal(out[t], out[0])


def test_augment_keeps_padded_clip_frames_zero():
    import tensorflow as tf

    from dfd.training.augment import make_augment_fn

    clip = np.stack([_face(i) for i in range(4)])
    clip[2:] = 0
    mask = np.array([True, True, False, False])
    fn = make_augment_fn(AugmentConfig(brightness=0.5), "clips")
    (inputs, _, _) = fn({"faces": tf.constant(clip), "mask": tf.constant(mask)}, 1.0, 1.0)
    out = inputs["faces"].numpy()
    assert out[2:].max() == 0 and out[:2].max() > 0


def test_augment_rejects_float_input():
    import tensorflow as tf

    from dfd.training.augment import augment

    with pytest.raises(ValueError, match="uint8"):
        augment(tf.zeros([SIZE, SIZE, 3]), AugmentConfig())


# ------------------------------------------------------------------ data and metrics


def test_count_labels_and_class_weights(shards, tmp_path):
    from dfd.training.data import LabelCounts, count_labels

    counts = count_labels(shards[0], "frames")
    assert (counts.real, counts.fake) == (24, 24)
    assert count_labels(shards[0], "clips").total == 16
    assert count_labels(shards[0], "frames", max_faces_per_record=1).total == 16
    w = LabelCounts(real=30, fake=10).class_weights()
    assert w[0] == pytest.approx(40 / 60) and w[1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="both classes"):
        LabelCounts(real=5, fake=0).class_weights()


def test_make_dataset_weights_and_sampling(shards, tmp_path):
    from dfd.training.data import LabelCounts, make_dataset

    cfg = small_config(tmp_path, shards, class_balance="weights")
    x, y, w = next(iter(make_dataset(cfg, True, LabelCounts(real=36, fake=12))))
    assert x.shape == (8, SIZE, SIZE, 3) and x.dtype.name == "uint8"
    expected = np.where(y.numpy() > 0.5, 2.0, 48 / 72)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    cfg = small_config(tmp_path, shards, class_balance="sampling")
    ys = np.concatenate([b[1].numpy() for b in make_dataset(cfg, True).take(20)])
    assert ys.size == 160 and 0.35 < ys.mean() < 0.65
    clips = small_config(tmp_path, shards, input_kind="clips", clip_len=4)
    x, y, w = next(iter(make_dataset(clips, False)))
    assert x["faces"].shape == (8, 4, SIZE, SIZE, 3) and x["mask"].shape == (8, 4)


def test_binary_metrics_known_values():
    from dfd.training.evaluate import binary_metrics

    m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert m["auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["loss"] == pytest.approx(np.mean([0.01, 0.36, 0.36, 0.01]))
    assert np.isnan(binary_metrics([1, 1], [0.2, 0.9])["auc"])
    with pytest.raises(ValueError, match="labels"):
        binary_metrics([0, 1], [0.5])


# ------------------------------------------------------------------ training runs


class _Interrupt(Exception):
    pass


class InterruptAt:
    """Extra callback that 'kills' the run at the end of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def __getattr__(self, name):  # every other Keras callback hook: do nothing
        if name.startswith("on_") or name.startswith("set_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt(f"simulated crash after epoch {epoch}")


def _keras_interrupt(epoch):
    import keras

    class Cb(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e == epoch:
                raise _Interrupt(f"simulated crash after epoch {e}")

    return Cb()


def test_fit_run_writes_every_artefact(tmp_path, shards):
    import keras

    from dfd.training import train
    from dfd.training.trainer import RunResult

    cfg = small_config(tmp_path, shards, tensorboard=True, patience=3,
                       augment=AugmentConfig())
    res = train(cfg)
    assert isinstance(res, RunResult) and res.loop == "fit" and res.epochs_run == 2
    run = Path(cfg.run_dir)
    assert load_config(TrainConfig, run / "config.json") == cfg
    runtime = json.loads((run / "config.json").read_text())["runtime"]
    assert runtime["tensorflow"] == __import__("tensorflow").__version__
    assert runtime["onednn"] in (True, False) and runtime["cpus"] >= 1
    assert any(d.endswith("CPU:0") for d in runtime["devices"])
    for name in ("history.csv", "history.json", "metrics.json", "best.keras", "last.keras"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").rglob("*tfevents*"))
    hist = json.loads((run / "history.json").read_text())
    assert hist["epoch"] == [0, 1]
    assert {"loss", "auc", "accuracy", "precision", "recall", "val_auc"} <= set(hist)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"best", "last"} and 0 <= metrics["best"]["auc"] <= 1
    assert metrics["best"]["n"] == 24
    x = next(iter(np.stack([_face(i) for i in range(4)])[None]))
    last = keras.models.load_model(run / "last.keras")
    np.testing.assert_allclose(last.predict(x, verbose=0), res.model.predict(x, verbose=0),
                               rtol=1e-5)
    keras.models.load_model(run / "best.keras")
    # the model's inputs are recorded; the tiny shards' index names no face framing
    info = json.loads((run / "preset.json").read_text())
    assert info["extra"]["inputs"]["faces"]["dtype"] == "uint8" and info["face_margin"] is None
    assert info["architecture"] is None  # a "module:builder" model is not a registered one
    assert info["extra"]["trained_as"] == cfg.model


def test_model_records_the_face_framing_of_its_training_shards(tmp_path):
    from dfd import schema
    from dfd.framing import shards_face_centre, shards_face_margin

    a = write_tiny_shards(tmp_path / "a", records=2, seed=0, prefix="a")
    b = write_tiny_shards(tmp_path / "b", records=2, seed=1, prefix="b")

    def set_margin(d, m, key="face_margin"):
        index = schema.read_index(d)
        index[key] = m
        (Path(d) / schema.INDEX_FILE).write_text(json.dumps(index))

    cfg = TrainConfig(train=[str(a), str(b)])
    assert shards_face_margin(cfg.train) is None  # neither index says
    set_margin(a, 1.05)
    assert shards_face_margin(cfg.train) is None  # one unknown
    set_margin(b, 1.3)
    assert shards_face_margin(cfg.train) is None  # they disagree
    set_margin(b, 1.05)
    assert shards_face_margin(cfg.train) == 1.05
    assert shards_face_margin([str(a)]) == 1.05
    # the centre: absent means the alignment centre every shard was cut at
    assert shards_face_centre(cfg.train) == 0.0
    set_margin(a, -0.033, "face_centre")
    assert shards_face_centre(cfg.train) is None  # they disagree
    set_margin(b, -0.033, "face_centre")
    assert shards_face_centre(cfg.train) == -0.033


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_killed_run_resumes_where_it_stopped(tmp_path, shards, loop):
    from dfd.training import train

    cfg = small_config(tmp_path, shards, epochs=4, loop=loop)
    crash = _keras_interrupt(1) if loop == "fit" else InterruptAt(1)
    with pytest.raises(_Interrupt):
        train(cfg, callbacks=[crash])
    res = train(cfg)
    assert res.resumed_from_epoch == 2
    assert res.history["epoch"] == [0, 1, 2, 3]
    rows = (Path(cfg.run_dir) / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # header + one row per epoch: epochs 0-1 were not re-run
    if loop == "custom":  # its tf.train.Checkpoint holds model and optimizer together
        return
    # the optimizer's state came back too (Keras 3 BackupAndRestore saves its variables):
    # its step count is that of an unbroken run
    whole = train(small_config(tmp_path / "whole", shards, epochs=4, loop=loop))
    assert int(res.model.optimizer.iterations.numpy()) == int(whole.model.optimizer.iterations.numpy())
    assert int(res.model.optimizer.iterations.numpy()) > 0


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_early_stopping_on_val_auc(tmp_path, shards, loop):
    from dfd.training import train

    cfg = small_config(tmp_path, shards, epochs=6, patience=1, learning_rate=1e-12, loop=loop)
    res = train(cfg)
    assert res.stopped_early and res.epochs_run == 2


def test_two_phases_freeze_then_finetune_backbone(tmp_path, shards):
    import keras

    from dfd.training import train

    seen = {}

    def builder(cfg):
        model = tiny_builder(cfg)
        seen["init"] = [w.copy() for w in model.get_layer("backbone").get_weights()]
        return model

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = [w.copy() for w in self.model.get_layer("backbone").get_weights()]
            seen[f"lr{epoch}"] = float(self.model.optimizer.learning_rate.numpy())

    cfg = small_config(tmp_path, shards, phases=[Phase(1, 0.01, False), Phase(1, 0.002, True)])
    res = train(cfg, model_fn=builder, callbacks=[Watch()])
    assert res.history["epoch"] == [0, 1]
    for a, b in zip(seen["init"], seen[0]):
        np.testing.assert_array_equal(a, b)  # phase 1: backbone frozen
    assert any(not np.array_equal(a, b) for a, b in zip(seen[0], seen[1]))
    assert seen["lr0"] == pytest.approx(0.01) and seen["lr1"] == pytest.approx(0.002)
    assert (Path(cfg.run_dir) / "phases" / "phase1.done").exists()


def test_clip_input_trains(tmp_path, shards):
    from dfd.training import train

    cfg = small_config(tmp_path, shards, input_kind="clips", clip_len=3, epochs=1,
                       augment=AugmentConfig(), class_balance="sampling", steps_per_epoch=2)
    res = train(cfg, model_fn=tiny_builder)
    assert res.epochs_run == 1 and res.metrics["last"]["n"] == 8


def test_same_run_dir_with_other_config_is_refused(tmp_path, shards):
    from dfd.training import train

    train(small_config(tmp_path, shards, epochs=1))
    with pytest.raises(ValueError, match="different config"):
        train(small_config(tmp_path, shards, epochs=1, learning_rate=0.5))


def test_run_dir_from_before_an_option_existed_still_resumes(tmp_path, shards):
    """A config.json written before an option was added reads it as its default (the
    behaviour the run had); an option this version does not know still refuses."""
    from dfd.training import train
    from dfd.training.trainer import CONFIG_FILE

    cfg = small_config(tmp_path, shards, epochs=1)
    train(cfg)
    path = Path(cfg.run_dir) / CONFIG_FILE
    written = json.loads(path.read_text())
    del written["config"]["sam_rho"]
    del written["config"]["augment"]["cutout_prob"]
    path.write_text(json.dumps(written))
    assert train(small_config(tmp_path, shards, epochs=1)).epochs_run == 1
    with pytest.raises(ValueError, match="different config"):
        train(small_config(tmp_path, shards, epochs=1, sam_rho=0.05))
    written["config"]["from_the_future"] = 1
    path.write_text(json.dumps(written))
    with pytest.raises(ValueError, match="from_the_future"):
        train(small_config(tmp_path, shards, epochs=1))


def test_mixed_precision_keeps_float32_head_and_restores_policy(tmp_path, shards):
    import keras

    from dfd.training import train

    res = train(small_config(tmp_path, shards, epochs=1, steps_per_epoch=1,
                             mixed_precision=True))
    assert res.model.outputs[0].dtype == "float32"
    assert res.model.get_layer("backbone").layers[2].compute_dtype == "float16"
    assert keras.mixed_precision.global_policy().name == "float32"

    def half_head(cfg):
        inp = keras.Input((SIZE, SIZE, 3))
        out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inp))
        return keras.Model(inp, out)

    cfg = small_config(tmp_path / "b", shards, epochs=1, mixed_precision=True)
    with pytest.raises(ValueError, match="float32"):
        train(cfg, model_fn=half_head)
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("name", ["meso4", "mesoinception4"])
def test_mesonet_names_resolve_lazily(name):
    pytest.importorskip("mesonet_tf.models")
    from dfd.training.factories import build_model

    model = build_model(TrainConfig(model=name, face_size=SIZE))
    assert tuple(model.inputs[0].shape) == (None, SIZE, SIZE, 3)
    assert model.outputs[0].dtype == "float32"


def test_unknown_model_name_is_a_clear_error():
    from dfd.training.factories import resolve_builder

    with pytest.raises(ValueError, match="cannot import"):
        resolve_builder("no_such_pkg.mod:build")


# ------------------------------------------------------------------ dfd train


def test_cli_trains_from_flags_and_config(tmp_path, shards, capsys):
    from dfd_app.cli.main import main

    run = tmp_path / "cli-run"
    argv = ["train", "--model", "tests.test_training:tiny_model", "--train", str(shards[0]),
            "--val", str(shards[1]), "--run-dir", str(run), "--epochs", "1",
            "--face-size", str(SIZE), "--batch-size", "8", "--no-augment", "--no-tensorboard"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "val auc" in out and (run / "best.keras").exists()
    saved = load_config(TrainConfig, run / "config.json")
    assert saved.epochs == 1 and saved.augment.enabled is False
    # the saved config drives a dry run; flags override it
    assert main(["train", "--config", str(run / "config.json"), "--epochs", "3",
                 "--average-from", "2", "--sam-rho", "0.05", "--dry-run"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["epochs"] == 3 and doc["model"] == "tests.test_training:tiny_model"
    assert doc["average_from"] == 2 and doc["sam_rho"] == 0.05
    assert main(["train", "--train", "x", "--sam-rho", "-1", "--dry-run"]) == 2
    assert main(["train", "--train", "x", "--average-from", "4", "--epochs", "3",
                 "--dry-run"]) == 2  # past the run's last epoch: one line, no traceback
    assert main(["train", "--train", "x", "--phases", "[oops", "--dry-run"]) == 2
