"""Scoring: faces -> P(fake), shards -> frame and video tables, and ``dfd predict``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from data_prep import shard_writer  # noqa: E402
from dfd import framing, readers, schema  # noqa: E402
from dfd.inference.frames import (  # noqa: E402
    predict,
    predict_cached,
    predict_frames,
    predict_videos,
    score_faces,
)
from dfd.scores import FRAME_COLUMNS, SOURCE_COLUMN, VIDEO_COLUMNS, read_table  # noqa: E402
from dfd_app.cli import main as cli
from mesonet_tf.models import Meso4  # noqa: E402
from tests.conftest import write_shards  # noqa: E402

SIZE = 32


def _rec(vid, n, label, seed, track=0, source=""):
    rng = np.random.default_rng(seed)
    faces = [schema.encode_png(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
             for _ in range(n)]
    return schema.FaceRecord(video_id=vid, label=label, faces=faces, track=track,
                             frame_indices=list(range(0, 5 * n, 5)), source=source)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), [
        _rec("a", 3, 1, 0, source="csv:ffpp_faces"), _rec("b", 2, 0, 1),
        _rec("b", 2, 0, 2, track=1), _rec("u", 1, -1, 3)])


@pytest.fixture(scope="module")
def model():
    return Meso4(input_shape=(SIZE, SIZE, 3), name="tiny")


def test_score_faces_shapes_and_errors(model):
    x = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    p = score_faces(model, x, batch_size=2)
    assert p.shape == (5,) and p.dtype == np.float64
    np.testing.assert_allclose(p, model.predict(x, verbose=0).ravel(), atol=1e-6)
    np.testing.assert_allclose(score_faces(model, x[0]), p[:1], atol=1e-6)  # one face
    assert score_faces(model, np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match=r"\(5, 32, 32\)"):
        score_faces(model, x[..., 0])
    with pytest.raises(ValueError, match="16x16.*32x32"):
        score_faces(model, np.zeros((1, 16, 16, 3), np.uint8))


def test_the_input_contract_is_read_from_the_model_else_the_signature(model):
    from dfd.inference.frames import as_scorer, input_size
    from dfd.inference.loading import Scorer
    from dfd.presets import ModelPreset

    assert as_scorer(model).faces_shape == [None, SIZE, SIZE, 3]
    assert input_size(as_scorer(model)) == (SIZE, SIZE)
    signed = ModelPreset(name="export", extra={"inputs": {"faces": {"shape": [None, 8, 12, 3]}}})
    exported = Scorer(lambda x: x, "export", "frames", preset=signed)
    assert exported.faces_shape == [None, 8, 12, 3] and input_size(exported) == (8, 12)
    unknown = Scorer(lambda x: x, "fn", "frames", preset=ModelPreset(name="fn"))
    assert unknown.faces_shape is None and input_size(unknown) is None
    no_shape = ModelPreset(name="e", extra={"inputs": {"faces": {"dtype": "uint8"}}})
    assert Scorer(lambda x: x, "e", "frames", preset=no_shape).faces_shape is None


def test_a_clip_models_contract_is_read_from_its_faces_input():
    import keras

    from dfd.inference.loading import Scorer

    faces = keras.Input((4, SIZE, SIZE, 3), name="faces")
    mask = keras.Input((4,), name="mask")
    out = keras.layers.Dense(1)(keras.layers.Flatten()(faces))
    clip_model = keras.Model({"mask": mask, "faces": faces}, out)
    assert Scorer(clip_model, "c", "clips", model=clip_model).faces_shape == \
        [None, 4, SIZE, SIZE, 3]


def test_predict_frames_scores_every_face(model, shards):
    frames = predict_frames(model, shards, batch_size=3)
    assert list(frames.columns) == FRAME_COLUMNS and len(frames) == 8  # unknown kept
    assert set(frames["model"]) == {"tiny"}
    els = list(readers.frame_dataset(shards, face_size=SIZE, keep_unknown=True).as_numpy_iterator())
    direct = model.predict(np.stack([e["face"] for e in els]), verbose=0).ravel()
    np.testing.assert_allclose(frames["p_fake"].to_numpy(), direct, atol=1e-6)
    assert frames[frames.video_id == "a"]["frame_index"].tolist() == [0, 5, 10]


def test_predict_videos_aggregates_with_labels(model, shards):
    frames, videos = predict(model, shards, aggregation="mean", model_name="m")
    assert list(videos.columns) == VIDEO_COLUMNS + [SOURCE_COLUMN]
    v = videos.set_index("video_id")
    assert v["source"].to_dict() == {"a": "csv:ffpp_faces", "b": "", "u": ""}
    assert v.loc["a", "label"] == 1 and v.loc["b", "label"] == 0 and v.loc["u", "label"] == -1
    assert v.loc["a", "p_fake"] == pytest.approx(frames[frames.video_id == "a"]["p_fake"].mean())
    b = frames[frames.video_id == "b"].groupby("track")["p_fake"].mean()
    assert v.loc["b", "p_fake"] == pytest.approx(b.max())  # most suspicious person
    assert v.loc["b", "n_faces"] == 4 and set(videos["aggregation"]) == {"mean"}
    voted = predict_videos(model, shards, aggregation="vote").set_index("video_id")
    assert set(np.round(voted["p_fake"] * 6)) <= set(range(7))
    with pytest.raises(ValueError, match="'median'"):
        predict_videos(model, shards, aggregation="median")


def test_predict_cached_writes_once_then_reuses(model, shards, tmp_path):
    path = tmp_path / "scores" / "m-all.csv"
    assert predict_cached(model, shards, path, model_name="m") == path
    first = read_table(path)
    assert set(first["video_id"]) == {"a", "b", "u"} and set(first["model"]) == {"m"}
    path.write_text(path.read_text().replace(",m,", ",kept,"))  # a stale table is not redone
    predict_cached(model, shards, path, model_name="m")
    assert set(read_table(path)["model"]) == {"kept"}
    other = predict_cached(model, shards, tmp_path / "m-test.parquet", model_name="m",
                           split="test")
    assert other.suffix == ".parquet" and len(read_table(other)) <= len(first)


def test_predict_accepts_a_frame_dataset(model, shards):
    ds = readers.frame_dataset(shards, face_size=SIZE)
    frames = predict_frames(model, ds, model_name="x")
    assert len(frames) == 7 and set(frames["video_id"]) == {"a", "b"}


def test_dfd_predict_command(model, shards, tmp_path):
    path = tmp_path / "tiny.keras"
    model.save(path)
    out, fr = tmp_path / "v.csv", tmp_path / "f.csv"
    rc = cli.main(["predict", "--model", str(path), "--shards", str(shards), "--out", str(out),
                   "--frames-out", str(fr), "--aggregation", "max", "--batch-size", "4"])
    assert rc == 0
    videos, frames = read_table(out), read_table(fr)
    assert len(videos) == 3 and len(frames) == 8 and set(videos["model"]) == {"tiny"}
    a = frames[frames.video_id == "a"]["p_fake"].max()
    assert videos.set_index("video_id").loc["a", "p_fake"] == pytest.approx(a)
    np.testing.assert_allclose(
        frames["p_fake"], predict_frames(model, shards)["p_fake"], atol=1e-6)


def test_dfd_predict_through_tflite_gives_the_keras_scores(model, shards, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("DFD_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.keras"
    model.save(path)
    tables = {}
    for runtime in ("keras", "tflite"):
        out = tmp_path / f"{runtime}.csv"
        assert cli.main(["predict", "--model", str(path), "--shards", str(shards), "--out",
                         str(out), "--runtime", runtime]) == 0
        tables[runtime] = read_table(out).set_index("video_id")["p_fake"]
    np.testing.assert_allclose(tables["tflite"], tables["keras"], atol=1e-5)
    assert list((tmp_path / "cache" / "lite").glob("*.tflite"))  # it did convert


def test_dfd_predict_scores_one_source(model, shards, tmp_path, caplog):
    path = tmp_path / "tiny.keras"
    model.save(path)
    for name in ("ffpp_faces", "csv:ffpp_faces", "ffpp"):  # as --mix and --trained-on take it
        out = tmp_path / f"{name}.csv"
        assert cli.main(["predict", "--model", str(path), "--shards", str(shards), "--out",
                         str(out), "--source", name]) == 0
        videos = read_table(out)
        assert videos["video_id"].tolist() == ["a"] and videos["source"].tolist() == [
            "csv:ffpp_faces"]
    alone = predict(model, shards)[1].set_index("video_id").loc["a", "p_fake"]
    assert videos["p_fake"].iloc[0] == pytest.approx(alone)
    for name in ("faces", "dfdc_faces"):  # a name is matched whole, never a part of one
        with caplog.at_level("ERROR"):
            rc = cli.main(["predict", "--model", str(path), "--shards", str(shards), "--out",
                           str(tmp_path / "none.csv"), "--source", name])
        assert rc == 2 and not (tmp_path / "none.csv").exists()
        assert (f"no record of source {name!r} in {shards}; the shards hold csv:ffpp_faces"
                in caplog.text)


def test_a_record_without_decodable_faces_is_an_error_row(model, tmp_path):
    bad = schema.FaceRecord(video_id="broken", label=1, faces=[b"not an image"] * 2,
                            frame_indices=[0, 1])
    with shard_writer.ShardWriter(tmp_path, "part") as w:
        w.add(_rec("ok", 2, 0, 5))
        w.add(bad)
    shard_writer.build_index(tmp_path)
    frames, videos = predict(model, tmp_path)
    assert set(frames["video_id"]) == {"ok"}
    row = videos.set_index("video_id").loc["broken"]
    assert row["status"] == "error" and np.isnan(row["p_fake"]) and row["label"] == 1
    assert "decoded" in row["error"]
    assert videos.set_index("video_id").loc["ok", "error"] == ""


def test_a_partly_damaged_record_says_how_many_faces_it_lost(model, tmp_path):
    good = _rec("part", 3, 1, 6)
    damaged = schema.FaceRecord(video_id="part", label=1, track=0,
                                faces=good.faces[:2] + [b"not an image"], frame_indices=[0, 5, 10])
    with shard_writer.ShardWriter(tmp_path, "part") as w:
        w.add(damaged)
        w.add(_rec("part", 2, 1, 7, track=1))  # another person of the same video, intact
    shard_writer.build_index(tmp_path)
    frames, videos = predict(model, tmp_path)
    assert len(frames) == 4
    row = videos.set_index("video_id").loc["part"]
    assert row["status"] == "ok" and row["n_faces"] == 4 and np.isfinite(row["p_fake"])
    assert row["error"] == "1 of 5 stored faces could not be decoded; scored on the rest"


def test_shard_faces_are_reframed_for_the_model(model, tmp_path):
    from dfd.framing import recrop_margin
    from dfd.inference.loading import scorer_from_keras

    d = tmp_path / "wide"
    with shard_writer.ShardWriter(d, "part") as w:
        w.add(_rec("a", 3, 1, 0))
    shard_writer.build_index(d, face_margin=1.3)  # faces framed as MesoNet aligns them
    faces = np.stack([e["face"] for e in readers.frame_dataset(d, face_size=SIZE).as_numpy_iterator()])
    tight = scorer_from_keras(model, "tight")
    tight.face_margin = 1.06
    got = predict_frames(tight, d)["p_fake"].to_numpy()
    want = model.predict(recrop_margin(faces, 1.3, 1.06), verbose=0).ravel()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, model.predict(faces, verbose=0).ravel(), atol=1e-6)
    # same framing, unknown framing, or tighter shards: the faces are scored as they are
    same = scorer_from_keras(model, "same")
    for margin in (1.3, None, 1.5):
        same.face_margin = margin
        np.testing.assert_allclose(predict_frames(same, d)["p_fake"].to_numpy(),
                                   model.predict(faces, verbose=0).ravel(), atol=1e-6)
    assert framing.shards_face_margin(d) == 1.3
