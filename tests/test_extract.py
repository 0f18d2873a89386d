"""The per-video job with fake detectors: tracks, failures, and the shard-record round trip."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.extract import (
    ExtractConfig,
    NoFaceError,
    VideoFaces,
    extract_faces,
    to_face_records,
)
from data_prep.faces import Detection, FakeDetector, centred_face
from data_prep.sampling import VideoReadError, uniform_indices


@pytest.fixture
def clip(tiny_video_factory):
    return tiny_video_factory("extract.mp4", frames=36, size=(160, 120))


def _two_people(frame, pos):
    """A big face and a small face on every frame, plus a stray one on the first frame."""
    h, w = frame.shape[:2]
    big = centred_face(frame, frac=0.5)[0]
    small = Detection((5.0, 5.0, 35.0, 35.0), 0.95,
                      {"left_eye": (12, 15), "right_eye": (28, 15), "nose": (20, 20),
                       "mouth_left": (14, 28), "mouth_right": (26, 28)})
    stray = [Detection((w - 30.0, h - 30.0, w - 5.0, h - 5.0), 0.97)] if pos == 0 else []
    return [small, big] + stray


def test_default_keeps_the_largest_face_per_frame(clip):
    det = FakeDetector(fn=_two_people)
    cfg = ExtractConfig(n_frames=8, face_size=64, sampler="uniform")
    vf = extract_faces(clip, det, cfg)
    assert isinstance(vf, VideoFaces)
    assert vf.meta == {"fps": pytest.approx(15.0), "frame_count": 36, "width": 160,
                       "height": 120, "sampler": "uniform:8", "rotation": 0,
                       "frames_claimed": 36, "frames_decoded": 36}
    assert not vf.partial
    assert vf.frames_searched == 8
    (tr,) = vf.tracks
    assert tr.track == 0
    assert tr.frame_indices == uniform_indices(36, 8)
    assert len(tr.faces) == len(tr.boxes) == len(tr.confidences) == 8
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in tr.faces)
    assert tr.boxes[0] == pytest.approx((50, 30, 110, 90))  # the big centred face
    assert set(vf.timings) == {"decode", "detect", "align"}


def test_all_faces_groups_tracks_and_drops_short_ones(clip):
    vf = extract_faces(clip, FakeDetector(fn=_two_people),
                       ExtractConfig(n_frames=8, all_faces=True, face_size=32, min_face=10))
    assert [t.track for t in vf.tracks] == [0, 1]  # the stray one-frame face is dropped
    big, small = vf.tracks
    assert big.boxes[0] == pytest.approx((50, 30, 110, 90))
    assert small.boxes[0] == pytest.approx((5, 5, 35, 35))
    assert len(big.faces) == len(small.faces) == 8


def test_keyframe_sampler_is_recorded(clip):
    vf = extract_faces(clip, "fake", ExtractConfig(n_frames=4, sampler="keyframe"))
    assert vf.sampler == "keyframe:4"
    assert len(vf.tracks[0].faces) == 4


def test_no_face_and_unreadable_video_errors(clip, tmp_path):
    with pytest.raises(NoFaceError, match="6 frames searched") as err:
        extract_faces(clip, FakeDetector(fn=lambda f, i: []), ExtractConfig(n_frames=6))
    assert isinstance(err.value, ValueError) and err.value.n_frames_searched == 6
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        extract_faces(empty, FakeDetector())
    with pytest.raises(ValueError, match="sampler"):
        ExtractConfig(sampler="first")


def test_records_round_trip_through_the_shard_schema(clip):
    from dfd import schema

    vf = extract_faces(clip, FakeDetector(fn=_two_people),
                       ExtractConfig(n_frames=4, all_faces=True, face_size=32, min_face=10,
                                     sampler="uniform"))
    recs = to_face_records(vf, "extract.mp4", label=1, group="g", source="test", split="train")
    assert [r.track for r in recs] == [0, 1]
    back = schema.decode_record(schema.encode_record(recs[1]))
    assert back["video_id"] == "extract.mp4" and back["track"] == 1 and back["label"] == 1
    assert back["sampler"] == "uniform:4" and back["frame_count"] == 36
    assert list(back["frame_index"]) == vf.tracks[1].frame_indices
    assert np.allclose(back["box"], vf.tracks[1].boxes)
    face = schema.decode_image(back["face"][2])
    assert np.array_equal(face, vf.tracks[1].faces[2])  # lossless PNG
