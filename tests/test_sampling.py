"""Frame sampling over whole videos: exact indices, truncated/empty/non-video/zero-frame files."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep import sampling
from data_prep.sampling import VideoReadError, sample_frames, uniform_indices

BITS = 8  # the frame index is drawn as 8 black/white blocks, 8 px wide each


def _grey(frame, i):
    frame[:] = 0
    for b in range(BITS):
        if (i >> b) & 1:
            frame[:, 8 * b:8 * b + 8] = 255


def _index_of(rgb: np.ndarray) -> int:
    row = rgb[rgb.shape[0] // 2].mean(axis=1)
    return sum(1 << b for b in range(BITS) if row[8 * b + 4] > 128)


@pytest.fixture
def grey_video(tiny_video_factory):
    return tiny_video_factory("grey40.mp4", frames=40, size=(64, 48), draw=_grey)


def test_uniform_indices_spread_over_whole_video():
    idx = uniform_indices(300, 32)
    assert len(idx) == len(set(idx)) == 32
    assert idx == sorted(idx)
    assert idx[0] < 10 and idx[-1] > 290  # whole video, not the first N
    gaps = np.diff(idx)
    assert gaps.min() >= 9 and gaps.max() <= 10
    assert uniform_indices(5, 32) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="n_frames"):
        uniform_indices(10, 0)


@pytest.mark.parametrize("mode", ["uniform", "keyframe"])
def test_sampled_frames_are_the_indexed_frames(grey_video, mode):
    s = sample_frames(grey_video, n_frames=8, mode=mode)
    assert s.frame_count == 40
    assert (s.width, s.height) == (64, 48)
    assert s.fps == pytest.approx(15.0)
    assert s.sampler in ("uniform:8", "keyframe:8")
    if mode == "uniform":
        assert s.indices == uniform_indices(40, 8)
    assert len(s.frames) == len(s.indices) == 8
    for i, f in zip(s.indices, s.frames):
        assert f.dtype == np.uint8 and f.shape == (48, 64, 3)
        assert _index_of(f) == i, (i, _index_of(f))


def test_keyframe_mode_places_samples_near_uniform_targets(grey_video):
    s = sample_frames(grey_video, n_frames=8, mode="keyframe")
    targets = uniform_indices(40, 8)
    assert len(s.indices) == 8
    assert max(abs(a - b) for a, b in zip(s.indices, targets)) <= 2


def test_stride_mode_and_max_side(grey_video):
    s = sample_frames(grey_video, mode="stride", stride=7, max_side=32)
    assert s.indices == list(range(0, 40, 7))
    assert s.sampler == "stride:7"
    assert s.frames[0].shape == (24, 32, 3)
    assert (s.width, s.height) == (64, 48)  # source size
    full = sample_frames(grey_video, mode="stride", stride=7)
    assert [_index_of(f) for f in full.frames] == full.indices == s.indices
    with pytest.raises(ValueError, match="stride"):
        sample_frames(grey_video, mode="stride")
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_frames(grey_video, mode="first")


def test_short_video_gives_every_frame(tiny_video_factory):
    path = tiny_video_factory("short5.mp4", frames=5, size=(64, 48), draw=_grey)
    s = sample_frames(path, n_frames=32, mode="keyframe")
    assert s.indices == [0, 1, 2, 3, 4]
    assert s.sampler == "uniform:32"  # too short for the codec-aware sampler: fell back


def test_truncated_file_is_respaced_over_frames_that_exist(tiny_video_factory, tmp_path):
    import cv2

    src = tmp_path / "full.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    for i in range(40):
        frame = np.zeros((48, 64, 3), np.uint8)
        _grey(frame, i)
        w.write(frame)
    w.release()
    data = src.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # the header still claims 40 frames
    s = sample_frames(cut, n_frames=8)
    assert 5 < s.frame_count < 40
    assert s.indices == uniform_indices(s.frame_count, 8)
    assert s.indices[-1] >= s.frame_count - 3  # spread over what exists
    for i, f in zip(s.indices, s.frames):
        assert _index_of(f) == i


def test_header_count_that_lies_is_corrected(grey_video):
    # the decoder finds 40 frames where 90 were claimed: samples are re-spaced over 40
    stats = {}
    events = list(sampling._iter_uniform(grey_video, 8, 90, sampling._Converter(), stats))
    assert [e.kind for e in events].count("reset") == 1
    after = events[[e.kind for e in events].index("reset") + 1:]
    frames, idx = [e.frame for e in after], [e.index for e in after]
    assert stats["count"] == 40
    assert idx == uniform_indices(40, 8)
    assert all(_index_of(f) == i for i, f in zip(idx, frames))


def test_truncated_mp4_without_index_is_a_read_error(grey_video, tmp_path):
    data = grey_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="cut.mp4"):
        sample_frames(cut)


def test_unreadable_inputs_raise_clear_errors(tmp_path, tiny_video_factory):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        empty: "empty",
        text: "not a readable video",
        tmp_path: "directory",
        tiny_video_factory("zero.mp4", frames=0, size=(64, 48)): "no video stream|no frames",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoReadError, match=reason) as err:
            sample_frames(path)
        assert isinstance(err.value, ValueError)
        assert err.value.path == str(path)


def test_one_decoder_thread_gives_the_same_frames(grey_video):
    a = sample_frames(grey_video, n_frames=8, mode="keyframe")
    b = sample_frames(grey_video, n_frames=8, mode="keyframe", threads=1)
    assert a.indices == b.indices
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
