"""Tracked detection (full frame every k-th sample, windows between) against the previous
path (every frame detected whole): same faces, same scores; windows follow, re-detect on
drift and after a scene cut; the decode thread stops cleanly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from data_prep.extract import ExtractConfig, _threaded, extract_faces
from data_prep.faces import Detection, FakeDetector, box_iou


def _square_finder(frame, pos):
    """A 'detector' that finds the bright square wherever it is (also in a window)."""
    ys, xs = np.nonzero(frame[..., 0] > 200)
    if len(xs) == 0:
        return []
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    s = x1 - x0
    kp = {"left_eye": (x0 + 0.3 * s, y0 + 0.35 * s), "right_eye": (x0 + 0.7 * s, y0 + 0.35 * s),
          "nose": (x0 + 0.5 * s, y0 + 0.55 * s), "mouth_left": (x0 + 0.35 * s, y0 + 0.75 * s),
          "mouth_right": (x0 + 0.65 * s, y0 + 0.75 * s)}
    return [Detection((x0, y0, x1, y1), 0.99, kp)]


def _square_clip(factory, name, where, background=None, n=48):
    def draw(frame, i):
        frame[:] = background(i) if background else 30
        x, y = where(i)
        frame[y:y + 40, x:x + 40] = 255
    return factory(name, frames=n, size=(640, 360), draw=draw)


def _both(path, det_every=4, **kw):
    cfg = ExtractConfig(n_frames=16, sampler="uniform", face_size=32, detect_side=None,
                        min_face=10, detect_every=det_every, **kw)
    new = extract_faces(path, FakeDetector(fn=_square_finder), cfg)
    old = extract_faces(path, FakeDetector(fn=_square_finder),
                        dataclasses.replace(cfg, detect_every=1, overlap=False))
    return new, old


def test_windows_follow_a_moving_face_and_give_the_same_boxes(tiny_video_factory):
    path = _square_clip(tiny_video_factory, "slow.mp4", lambda i: (100 + 2 * i, 150))
    new, old = _both(path)
    assert new.detect_calls["window"] >= 10 and new.detect_calls["full"] == 4
    assert old.detect_calls == {"full": 16}
    for a, b in zip(new.tracks[0].boxes, old.tracks[0].boxes):
        assert box_iou(a, b) > 0.98


def test_a_face_that_jumps_is_found_again_on_the_whole_frame(tiny_video_factory):
    # the square jumps across the frame every few frames: a window loses it
    path = _square_clip(tiny_video_factory, "jump.mp4",
                        lambda i: (40 if (i // 6) % 2 else 540, 150))
    new, old = _both(path)
    assert new.detect_calls["redetect"] >= 2
    assert new.tracks[0].frame_indices == old.tracks[0].frame_indices
    for a, b in zip(new.tracks[0].boxes, old.tracks[0].boxes):
        assert box_iou(a, b) > 0.98


def test_a_scene_cut_restarts_detection(tiny_video_factory):
    # same place, but the scene changes colour at frame 20: a new shot is searched whole
    path = _square_clip(tiny_video_factory, "cut.mp4", lambda i: (300, 150),
                        background=lambda i: (30, 30, 30) if i < 20 else (40, 160, 40))
    new, _ = _both(path, det_every=100)
    assert new.detect_calls["full"] == 2  # the first frame and the cut


def test_decode_thread_stops_when_the_consumer_stops():
    import threading

    def gen():
        yield from range(1000)

    before = threading.active_count()
    it = _threaded(gen(), depth=2)
    assert next(it) == 0
    it.close()
    assert threading.active_count() == before

    def bad():
        yield 1
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        list(_threaded(bad()))


@pytest.mark.slow
def test_tracked_path_agrees_with_the_previous_path_on_dfdc(shared):
    """Box IoU >= 0.9 and video scores within 0.01 of the previous path, on the shared DFDC
    clips, both paths in one run."""
    pytest.importorskip("tensorflow")
    from dfd_app.detect import pipeline

    videos = sorted(shared("data", "dfdc_videos").glob("*.mp4"))
    ctx = pipeline.build_context(details=True)
    prev = dataclasses.replace(ctx, extract_cfg=dataclasses.replace(
        ctx.extract_cfg, detect_every=1, overlap=False))
    ious = []
    for v in videos:
        a, b = pipeline.detect_video(v, prev), pipeline.detect_video(v, ctx)
        assert a["status"] == b["status"] == "ok", (v.name, a["error"], b["error"])
        boxes = {f["frame_index"]: f["box"] for f in a["frames"]}
        got = {f["frame_index"]: f["box"] for f in b["frames"]}
        assert set(got) == set(boxes), v.name
        ious += [box_iou(boxes[k], got[k]) for k in boxes]
        assert b["p_fake"] == pytest.approx(a["p_fake"], abs=0.01), v.name
    ious = np.asarray(ious)
    assert np.mean(ious) >= 0.95 and np.percentile(ious, 1) >= 0.9, np.sort(ious)[:5]


def test_each_face_is_handed_over_as_soon_as_its_frame_is_searched(tiny_video_factory):
    # frames with no square (no face) in between; the square moves: each handed-over face is
    # exactly the crop the returned track holds for that frame
    def where(i):
        return (100 + 3 * i, 150)

    def draw(frame, i):
        frame[:] = 30
        if i % 7 != 3:
            x, y = where(i)
            frame[y:y + 40, x:x + 40] = 255
    path = tiny_video_factory("gaps.mp4", frames=48, size=(640, 360), draw=draw)
    cfg = ExtractConfig(n_frames=16, sampler="uniform", face_size=32, detect_side=None,
                        min_face=10, detect_every=4)
    handed: list = []
    vf = extract_faces(path, FakeDetector(fn=_square_finder), cfg,
                       on_face=lambda i, f: handed.append((i, f)))
    track = vf.tracks[0]
    assert [i for i, _ in handed] == track.frame_indices and len(handed) < 16
    for (_, face), kept in zip(handed, track.faces):
        assert kept is face  # the very crop handed over: aligned once, not twice
    # only where a frame's face is final when it is searched: one face per frame, tracked
    for other in (dataclasses.replace(cfg, detect_every=1), dataclasses.replace(cfg, all_faces=True)):
        handed.clear()
        extract_faces(path, FakeDetector(fn=_square_finder), other,
                      on_face=lambda i, f: handed.append(i))
        assert handed == []
