"""`dfd prep` on videos: parallel workers, per-video failure records, resumable runs."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep import prep
from data_prep.faces import FakeDetector, centred_face
from dfd import readers, schema
from dfd_app.cli.main import main


def _bright(frame, i):
    frame[:] = 200


def _dark(frame, i):
    frame[:] = 5


@pytest.fixture(scope="module")
def videos(tiny_video_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("prep_videos")
    good = tiny_video_factory("good.mp4", frames=24, draw=_bright)
    dark = tiny_video_factory("dark.mp4", frames=24, draw=_dark)
    (root / "real").mkdir()
    (root / "fake").mkdir()
    (root / "real" / "good.mp4").write_bytes(good.read_bytes())
    (root / "fake" / "dark.mp4").write_bytes(dark.read_bytes())
    (root / "fake" / "empty.mp4").write_bytes(b"")
    (root / "fake" / "notes.mp4").write_text("not a video at all\n")
    (root / "fake" / "truncated.mp4").write_bytes(good.read_bytes()[:600])
    return root


def _faces_only_when_bright(frame, position):
    return centred_face(frame) if frame.mean() > 100 else []


def _config(out, **kw):
    return prep.PrepConfig(sources=[], out_dir=str(out), n_frames=6, sampler="uniform",
                           detector="fake", workers=1, **kw)


def test_failures_are_recorded_and_the_run_carries_on(videos, tmp_path, monkeypatch):
    import data_prep.faces as faces

    monkeypatch.setattr(faces, "get_detector",
                        lambda name, **kw: FakeDetector(fn=_faces_only_when_bright))
    cfg = _config(tmp_path / "shards")
    cfg.sources = [str(videos)]
    res = prep.run_prep(cfg)
    assert (res.written, res.failed) == (1, 4)
    fails = prep.read_failures(tmp_path / "shards").set_index("video_id")
    by_file = {vid.split("/")[-1]: row for vid, row in fails.iterrows()}
    assert by_file["dark.mp4"]["status"] == "no_face"
    for name in ("empty.mp4", "notes.mp4", "truncated.mp4"):
        assert by_file[name]["status"] == "unreadable", by_file[name]["reason"]
        assert name in by_file[name]["reason"]
    (el,) = list(readers.clip_dataset(tmp_path / "shards", clip_len=6).as_numpy_iterator())
    assert el["mask"].all() and el["label"] == 0 and el["faces"].shape == (6, 256, 256, 3)
    # the aligned crop of a uniformly bright frame is bright
    assert el["faces"].mean() > 150
    index = schema.read_index(tmp_path / "shards")
    assert index["failures_by_status"] == {"no_face": 1, "unreadable": 3}
    # nothing is redone on a second run
    again = prep.run_prep(cfg)
    assert (again.written, again.failed, again.skipped) == (0, 0, 5)


def test_parallel_workers_through_the_command(videos, tmp_path, capsys):
    out = tmp_path / "par"
    code = main(["prep", str(videos), "--out", str(out), "--workers", "2", "--frames", "4",
                 "--sampler", "uniform", "--detector", "fake", "--contact-sheet",
                 str(tmp_path / "sheet.png")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 items written" in printed and "3 failed" in printed
    assert (tmp_path / "sheet.png").stat().st_size > 0
    recs = [schema.decode_record(r) for f in schema.resolve_shards(out)
            for r in _raw(f)]
    assert sorted(r[schema.VIDEO_ID].split("/")[-1] for r in recs) == ["dark.mp4", "good.mp4"]
    for r in recs:
        assert r[schema.SAMPLER] == "uniform:4" and len(r[schema.FACE]) == 4
        assert r[schema.FRAME_COUNT] == 24
        np.testing.assert_array_equal(r[schema.FRAME_INDEX], sorted(r[schema.FRAME_INDEX]))


def _raw(path):
    import tensorflow as tf

    return tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
