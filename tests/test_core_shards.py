"""Schema, shard writer and tf.data readers: round trips, resumability, corrupt shards."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep import shard_writer
from dfd import readers, schema


def _face(value: int, size: int = 32) -> bytes:
    return schema.encode_png(np.full((size, size, 3), value, np.uint8))


def _rec(vid: str, n: int, label: int = 1, track: int = 0) -> schema.FaceRecord:
    return schema.FaceRecord(
        video_id=vid, label=label, group=f"g-{vid}", source="test", track=track,
        faces=[_face(10 * i) for i in range(n)], frame_indices=list(range(0, 3 * n, 3)),
        boxes=[(i, i, i + 10, i + 10) for i in range(n)], confidences=[0.9] * n,
        fps=25.0, frame_count=3 * n, sampler=f"uniform:{n}", width=64, height=48,
    )


def _write(tmp_path, recs, max_records=2):
    with shard_writer.ShardWriter(tmp_path, "part", max_records=max_records) as w:
        for r in recs:
            w.add(r)
    shard_writer.build_index(tmp_path)
    return tmp_path


def test_record_round_trip():
    rec = _rec("a.mp4", 3)
    got = schema.decode_record(schema.encode_record(rec))
    assert got[schema.VIDEO_ID] == "a.mp4" and got[schema.LABEL] == 1
    assert got[schema.GROUP] == "g-a.mp4" and got[schema.SAMPLER] == "uniform:3"
    np.testing.assert_array_equal(got[schema.FRAME_INDEX], [0, 3, 6])
    np.testing.assert_allclose(got[schema.BOX][1], [1, 1, 11, 11])
    assert schema.decode_image(got[schema.FACE][2])[0, 0, 0] == 20


def test_face_png_is_lossless_for_both_readers():
    """The faster PNG settings (run-length matching, one row filter) lose no pixel: a face
    with texture, flat areas and a vertical gradient decodes to the same array through OpenCV
    and through the training input's TensorFlow decoder."""
    import cv2

    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    face[:16] = 128  # flat rows (run-length)
    face[16:32] = np.linspace(0, 255, 16, dtype=np.uint8)[:, None, None]  # rows repeat upward
    data = schema.encode_png(face)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(schema.decode_image(data), face)
    import tensorflow as tf

    np.testing.assert_array_equal(tf.io.decode_png(data, channels=3).numpy(), face)
    params = dict(zip(schema.png_params()[::2], schema.png_params()[1::2]))
    assert params[cv2.IMWRITE_PNG_COMPRESSION] == 1
    assert params[cv2.IMWRITE_PNG_STRATEGY] == cv2.IMWRITE_PNG_STRATEGY_RLE
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        assert params[cv2.IMWRITE_PNG_FILTER] == cv2.IMWRITE_PNG_FILTER_UP
    assert schema.encode_png(face) == data  # the same bytes each time (identical shards)


def test_empty_record_is_refused():
    with pytest.raises(ValueError, match="no faces"):
        schema.FaceRecord(video_id="x", label=1, faces=[], frame_indices=[])


def test_writer_index_and_frame_dataset(tmp_path):
    _write(tmp_path, [_rec("a", 3), _rec("b", 2, label=0), _rec("u", 1, label=-1)])
    index = schema.read_index(tmp_path)
    assert index["records"] == 3 and index["faces"] == 6 and len(index["shards"]) == 2
    els = list(readers.frame_dataset(tmp_path, face_size=32).as_numpy_iterator())
    assert len(els) == 5  # the unknown-label record is dropped
    assert {e["video_id"] for e in els} == {b"a", b"b"}
    assert els[0]["face"].shape == (32, 32, 3) and els[0]["face"].dtype == np.uint8
    resized = next(iter(readers.frame_dataset(tmp_path, face_size=16)))
    assert resized["face"].shape == (16, 16, 3)


def test_clip_dataset_pads_with_mask(tmp_path):
    _write(tmp_path, [_rec("a", 5), _rec("b", 2)])
    clips = {c["video_id"]: c for c in
             readers.clip_dataset(tmp_path, clip_len=4, face_size=32).as_numpy_iterator()}
    a, b = clips[b"a"], clips[b"b"]
    assert a["faces"].shape == (4, 32, 32, 3) and a["mask"].all()
    np.testing.assert_array_equal(b["mask"], [True, True, False, False])
    np.testing.assert_array_equal(b["frame_indices"], [0, 3, -1, -1])
    assert not b["faces"][2:].any()
    rnd = next(iter(readers.clip_dataset(tmp_path, clip_len=2, face_size=32, mode="random",
                                         seed=1)))
    assert rnd["mask"].numpy().all()


def test_truncated_shard_is_named(tmp_path):
    _write(tmp_path, [_rec("a", 3), _rec("b", 2)], max_records=1)
    shard = tmp_path / schema.read_index(tmp_path)["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(ValueError, match=shard.name):
        readers.frame_dataset(tmp_path)


def test_killed_run_leaves_no_complete_looking_shard(tmp_path):
    w = shard_writer.ShardWriter(tmp_path, "part", max_records=2)
    w.add(_rec("a", 1))
    w.add(_rec("b", 1))  # shard 0 committed
    w.add(_rec("c", 1))  # shard 1 open: a kill now must not count it
    w._fh.flush()
    assert shard_writer.finished_ids(tmp_path) == {"a", "b"}
    removed = shard_writer.cleanup_incomplete(tmp_path)
    assert [p.name for p in removed] == ["part-00001.tfrecord.tmp"]
    w2 = shard_writer.ShardWriter(tmp_path, "part", max_records=2)
    assert w2._name == "part-00001.tfrecord"


def test_resolve_shards_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard file"):
        schema.resolve_shards(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="index.json"):
        schema.resolve_shards(tmp_path)


def test_split_filter(tmp_path):
    a, b = _rec("a", 2), _rec("b", 3, label=0)
    a.split, b.split = "train", "val"
    _write(tmp_path, [a, b])
    got = {e["video_id"] for e in readers.frame_dataset(tmp_path, face_size=32, split="val")
           .as_numpy_iterator()}
    assert got == {b"b"}
    clips = list(readers.clip_dataset(tmp_path, clip_len=2, face_size=32, split="train")
                 .as_numpy_iterator())
    assert [c["video_id"] for c in clips] == [b"a"]
