"""The temporal model end to end on real DFDC videos (../shared/data/dfdc_videos, 3 REAL / 5 FAKE).

prep (RetinaFace, 8 frames a video) -> ``dfd.training.train`` on clips of 4 faces, backbone
frozen then fine-tuned -> ``predict_shards`` -> SavedModel export and reload -> ``dfd predict``.
The CNN is the tiny injected one of test_temporal_model.py, reached by the trainer through its
``"package.module:builder"`` model path. Skipped without ../shared; about a minute in all; runs in CI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_path
from tests.test_temporal_model import FACE, run

pytestmark = pytest.mark.shared

CLIP_LEN = 4
MAX_CLIPS = 3
BUILDER = "tests.test_temporal_model:build"  # tiny CNN + LSTM, via the trainer's import path


def snapshot(model):
    return {part: [np.array(w) for w in model.get_layer(part).get_weights()]
            for part in ("backbone", "lstm")}


def weight_watch():
    """A Keras callback keeping the backbone and LSTM weights at each fit start and epoch end."""
    import keras

    class Watch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts, self.ends = [], []

        def on_train_begin(self, logs=None):
            self.starts.append(snapshot(self.model))

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(snapshot(self.model))

    return Watch()


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def videos_dir():
    return shared_path("data", "dfdc_videos")


@pytest.fixture(scope="module")
def expected_labels(videos_dir):
    meta = json.loads((videos_dir / "metadata.json").read_text())
    return {vid: {"REAL": 0, "FAKE": 1}[m["label"]] for vid, m in meta.items()}


@pytest.fixture(scope="module")
def shards(videos_dir, tmp_path_factory):
    from data_prep.prep import PrepConfig, run_prep

    out = tmp_path_factory.mktemp("dfdc") / "shards"
    res = run_prep(PrepConfig(sources=[str(videos_dir)], out_dir=str(out), n_frames=8,
                              detector="retinaface", workers=1))
    assert (res.written, res.failed) == (8, 0), res.failures.to_string()
    return out


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    from dfd.training import Phase, TrainConfig, train

    cfg = TrainConfig(
        run_dir=str(tmp_path_factory.mktemp("dfdc") / "run"), model=BUILDER,
        model_kwargs={"clip_len": CLIP_LEN, "input_size": FACE, "dropout": 0.2},
        train=[str(shards)], val=[str(shards)], train_split="train", val_split="train",
        input_kind="clips", clip_len=CLIP_LEN, face_size=FACE, batch_size=4, steps_per_epoch=2,
        validation_steps=2, loss="bce", class_balance="weights", tensorboard=False,
        patience=None, augment={"enabled": True, "rotation": 0.0, "zoom": 0.0},
        phases=[Phase(1, 1e-3, trainable_backbone=False), Phase(1, 1e-3, True)],
    )
    watch = weight_watch()
    result = train(cfg, callbacks=[watch])
    return result, watch


def test_prep_writes_one_track_per_video(shards, expected_labels):
    index = json.loads((shards / "index.json").read_text())
    assert index["records"] == 8 and index["failures"] == 0
    assert index["labels"] == {"0": 3, "1": 5}
    assert sorted(expected_labels.values()) == [0, 0, 0, 1, 1, 1, 1, 1]
    assert 8 * 4 <= index["faces"] <= 8 * 8  # a face in most of the 8 sampled frames


def test_two_phases_freeze_then_fine_tune(trained):
    result, watch = trained
    assert result.epochs_run == 2 and result.loop == "fit"
    assert np.isfinite(result.history["loss"]).all()
    assert np.isfinite(result.metrics["last"]["loss"])
    assert len(watch.starts) == len(watch.ends) == 2
    frozen, tuned = zip(watch.starts, watch.ends, strict=True)
    assert same(frozen[0]["backbone"], frozen[1]["backbone"])  # phase 1: CNN frozen
    assert not same(frozen[0]["lstm"], frozen[1]["lstm"])  # ... but the head learnt
    assert not same(tuned[0]["backbone"], tuned[1]["backbone"])  # phase 2: CNN fine-tuned
    assert (result.run_dir / "phases" / "phase1.done").exists()


def test_predict_scores_every_video(trained, shards, expected_labels):
    import keras

    from dfd import scores
    from dfd.inference import clips as predict

    model = keras.models.load_model(trained[0].last_model)
    clips, videos = predict.predict_shards(model, shards, max_clips=MAX_CLIPS, batch_size=4)
    assert list(videos.columns) == scores.VIDEO_COLUMNS + [scores.SOURCE_COLUMN]
    by_vid = videos.set_index("video_id")
    assert by_vid["label"].to_dict() == expected_labels
    assert np.isfinite(by_vid["p_fake"]).all() and by_vid["p_fake"].between(0, 1).all()
    assert (by_vid["status"] == "ok").all() and (by_vid["model"] == "temporal-custom").all()
    assert (clips["n_valid"] <= CLIP_LEN).all()
    assert clips.groupby("video_id").size().between(1, MAX_CLIPS).all()
    index = json.loads((shards / "index.json").read_text())
    assert by_vid["n_faces"].sum() == index["faces"]  # <= T * max_clips faces: all used
    # the in-memory model of the run is the saved one
    _, again = predict.predict_shards(trained[0].model, shards, max_clips=MAX_CLIPS)
    np.testing.assert_allclose(again["p_fake"], videos["p_fake"], atol=1e-6)


def real_clips(shards):
    """One clip of a REAL and one of a FAKE video, at the model's input side."""
    from dfd.inference import clips as predict

    picked = {}
    for el in predict.multi_clip_dataset(shards, CLIP_LEN, 1, face_size=FACE):
        picked.setdefault(int(el["label"]), el)
    assert sorted(picked) == [0, 1]
    faces = np.stack([picked[k]["faces"].numpy() for k in (0, 1)])
    mask = np.stack([picked[k]["mask"].numpy() for k in (0, 1)])
    assert faces.dtype == np.uint8 and faces.shape == (2, CLIP_LEN, FACE, FACE, 3) and faces.any()
    return faces, mask


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from dfd import export

    out = tmp_path_factory.mktemp("dfdc") / "export"
    return export.export_savedmodel(trained[0].model, out, source="test_temporal_shared")


def test_export_scores_like_the_keras_model(trained, shards, exported):
    import tensorflow as tf

    from dfd import export
    from dfd.inference import loading

    model = trained[0].model
    faces, mask = real_clips(shards)
    want = run(model, faces, mask).reshape(-1)
    sig = tf.saved_model.load(str(exported)).signatures[loading.SIGNATURE]
    got = sig(faces=tf.constant(faces), mask=tf.constant(mask))[loading.OUTPUT_KEY].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    scorer = loading.load_any(exported)
    assert scorer.kind == "savedmodel" and scorer.n_inputs == 2
    np.testing.assert_allclose(scorer(faces, mask), want, atol=1e-5)
    keras_scorer = loading.load_any(exported / loading.KERAS_FILE)
    np.testing.assert_allclose(keras_scorer(faces, mask), want, atol=1e-5)
    info = export.read_model_info(exported)
    assert info["inputs"]["faces"]["shape"] == [None, CLIP_LEN, None, None, 3]  # any size
    assert info["face_size"] == FACE and info["clip_len"] == CLIP_LEN
    assert info["source_weights"] == "test_temporal_shared"


def test_dfd_predict_cli_on_the_export(exported, shards, trained, expected_labels, tmp_path,
                                       capsys):
    from dfd import scores
    from dfd.inference import clips as predict
    from dfd_app.cli import main as cli

    out, clips_out = tmp_path / "videos.csv", tmp_path / "clips.csv"
    rc = cli.main(["predict", "--model", str(exported), "--shards", str(shards), "--out", str(out),
                   "--frames-out", str(clips_out), "--max-clips", str(MAX_CLIPS),
                   "--model-name", "temporal-tiny"])
    assert rc == 0
    videos = scores.read_table(out)
    assert list(videos.columns) == scores.VIDEO_COLUMNS + [scores.SOURCE_COLUMN]
    by_vid = videos.set_index("video_id")
    assert by_vid["label"].to_dict() == expected_labels
    assert np.isfinite(by_vid["p_fake"]).all() and (by_vid["status"] == "ok").all()
    assert (by_vid["model"] == "temporal-tiny").all()
    clips = scores.read_table(clips_out)
    assert list(clips.columns) == predict.CLIP_COLUMNS
    printed = capsys.readouterr().out
    assert all(vid in printed for vid in expected_labels)
    # the SavedModel through the CLI gives the Keras model's scores
    _, want = predict.predict_shards(trained[0].model, shards, max_clips=MAX_CLIPS)
    want = want.set_index("video_id")["p_fake"]
    np.testing.assert_allclose(by_vid["p_fake"][want.index], want, atol=1e-5)
