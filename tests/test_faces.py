"""Face detectors (interface, scaling, registry), tracks, and MesoNet-style alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_prep.faces import (
    Detection,
    FakeDetector,
    align_face,
    alignment_geometry,
    available_detectors,
    box_iou,
    build_tracks,
    centred_face,
    get_detector,
)
from dfd.framing import (
    DFDC_CROP_MARGIN,
    MESONET_CENTRE,
    MESONET_MARGIN,
    recrop_margin,
    reframer,
)
from tests.conftest import shared_path


def _face(cx, cy, s, conf=0.99, roll=0.0):
    """A synthetic face of scale ``s`` centred near (cx, cy), rolled by ``roll`` degrees."""
    pts = {"left_eye": (-0.2, -0.12), "right_eye": (0.2, -0.12), "nose": (0.0, 0.05),
           "mouth_left": (-0.15, 0.25), "mouth_right": (0.15, 0.25)}
    c, si = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    kp = {k: (cx + s * (x * c - y * si), cy + s * (x * si + y * c)) for k, (x, y) in pts.items()}
    return Detection((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), conf, kp)


def _dot_centre(img, colour):
    mask = np.all(np.abs(img.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(mask)
    assert xs.size, f"dot {colour} not in the crop"
    return xs.mean(), ys.mean()


@pytest.mark.parametrize("roll", [0.0, 25.0, -40.0])
def test_alignment_levels_the_eyes_and_centres_the_face(roll):
    frame = np.full((400, 500, 3), 90, np.uint8)
    det = _face(260, 210, 120, roll=roll)
    import cv2

    colours = {"left_eye": (255, 0, 0), "right_eye": (0, 255, 0), "nose": (0, 0, 255)}
    for k, col in colours.items():
        x, y = det.keypoints[k]
        cv2.circle(frame, (round(x * 16), round(y * 16)), 5 * 16, col, -1, cv2.LINE_AA, 4)
    crop = align_face(frame, det, size=256, margin=1.3)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    le, re_ = _dot_centre(crop, colours["left_eye"]), _dot_centre(crop, colours["right_eye"])
    assert abs(le[1] - re_[1]) < 1.5  # level eyes
    assert le[0] < re_[0]  # upright, not flipped
    assert abs((le[0] + re_[0]) / 2 - 128) < 1.5  # centred left-right
    # scale: eye distance 0.4*s, crop side 2.2*max(0.4s, 0.37s)*1.3 -> 256 px
    side = 2.2 * max(0.4, math.hypot(0, 0.37)) * 120 * 1.3
    assert math.hypot(re_[0] - le[0], re_[1] - le[1]) == pytest.approx(0.4 * 120 * 256 / side,
                                                                      abs=2)
    cx, cy, s, r = alignment_geometry(det)
    assert r == pytest.approx(roll, abs=1e-6)
    assert s == pytest.approx(side)


def test_recrop_to_a_smaller_margin_equals_aligning_at_it():
    import cv2

    rng = np.random.default_rng(0)
    # smooth texture, so resampling differences stay small
    frame = cv2.GaussianBlur(rng.integers(0, 256, (400, 500, 3), dtype=np.uint8), (0, 0), 6)
    frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX)
    det = _face(250, 200, 90, roll=12.0)
    wide = align_face(frame, det, size=256, margin=MESONET_MARGIN)
    tight = align_face(frame, det, size=256, margin=DFDC_CROP_MARGIN)
    got = recrop_margin(wide[None], MESONET_MARGIN, DFDC_CROP_MARGIN)
    assert got.shape == (1, 256, 256, 3) and got.dtype == np.uint8
    err = np.abs(got[0].astype(int) - tight.astype(int))
    assert err.mean() < 2.0, err.mean()
    # a crop at the wrong framing is far off: the check above can fail
    assert np.abs(wide.astype(int) - tight.astype(int)).mean() > 8
    # same margin: unchanged; other output size: resized
    assert recrop_margin(wide[None], 1.3, 1.3) is not None
    np.testing.assert_array_equal(recrop_margin(wide[None], 1.3, 1.3)[0], wide)
    assert recrop_margin(wide[None], 1.3, 1.05, size=64).shape == (1, 64, 64, 3)


@pytest.mark.parametrize("roll", [0.0, 30.0])
def test_the_crop_centre_moves_along_the_face_and_recrop_follows_it(roll):
    import cv2

    det = _face(250, 200, 90, roll=roll)
    cx, cy, side, r = alignment_geometry(det, 1.3)
    ux, uy, _, _ = alignment_geometry(det, 1.3, centre=MESONET_CENTRE)
    # up the face by 0.033 face scales (side / margin), perpendicular to the eye line
    step = -MESONET_CENTRE * side / 1.3
    a = math.radians(roll)
    assert (ux - cx, uy - cy) == pytest.approx((step * math.sin(a), -step * math.cos(a)), abs=1e-9)
    assert alignment_geometry(det, 1.3, centre=0.2)[2:] == (side, r)  # same side and roll
    # without keypoints: the box side is the scale
    assert alignment_geometry(Detection((20, 30, 60, 90), 0.9), 1.5, 0.1)[:2] == (40, 66)
    # a recrop that moves the centre equals aligning there
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (400, 500, 3), dtype=np.uint8), (0, 0), 6)
    frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX)
    wide = align_face(frame, det, size=256, margin=1.6)
    want = align_face(frame, det, size=256, margin=1.3, centre=-0.1)
    got = recrop_margin(wide[None], 1.6, 1.3, shift=-0.1)[0]
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0
    # the centred square is far off: the check above can fail
    assert np.abs(recrop_margin(wide[None], 1.6, 1.3)[0].astype(int) - want.astype(int)).mean() > 4


def test_recrop_and_reframer_refuse_a_square_the_faces_do_not_hold(caplog):
    faces = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"margin 1.3 \(centre moved \+0.010\).*margin 1.3"):
        recrop_margin(faces, 1.3, 1.3, shift=0.01)
    assert recrop_margin(faces, 1.5, 1.3, shift=0.1).shape == faces.shape  # just fits
    with caplog.at_level("WARNING"):
        assert reframer(1.3, 1.3, "m", model_centre=MESONET_CENTRE) is None
    assert "do not hold; scored as they are" in caplog.text
    assert reframer(1.3, 1.3, "m") is None  # same framing: nothing to do
    move = reframer(1.3, 1.4, "m", model_centre=MESONET_CENTRE)
    np.testing.assert_array_equal(move(faces), recrop_margin(faces, 1.4, 1.3, shift=-0.033))


def test_recrop_cannot_widen_and_checks_its_input():
    faces = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"cannot make margin 1.3 \(.*\) from faces cropped at margin 1.05"):
        recrop_margin(faces, 1.05, 1.3)
    with pytest.raises(ValueError, match=r"\[N, S, S, 3\].*\(2, 32, 16, 3\)"):
        recrop_margin(np.zeros((2, 32, 16, 3), np.uint8), 1.3, 1.05)
    with pytest.raises(ValueError, match="want=0"):
        recrop_margin(faces, 1.3, 0)


def test_alignment_pads_black_outside_the_frame_and_downscales_large_faces():
    frame = np.full((300, 300, 3), 200, np.uint8)
    crop = align_face(frame, _face(10, 10, 100), size=256)
    assert (crop[:40, :40] == 0).all()  # outside the frame: black
    assert (crop[200:, 200:] == 200).all()
    big = np.full((2000, 2000, 3), 120, np.uint8)
    crop = align_face(big, _face(1000, 1000, 1500), size=64)  # area pre-downscale path
    assert crop.shape == (64, 64, 3)
    assert (crop[28:36, 28:36] == 120).all()


def test_alignment_without_keypoints_uses_the_box():
    frame = np.zeros((100, 100, 3), np.uint8)
    cx, cy, side, roll = alignment_geometry(Detection((20, 30, 60, 90), 0.9), margin=1.5)
    assert (cx, cy, side, roll) == (40, 60, 90, 0)
    assert align_face(frame, Detection((20, 30, 60, 90), 0.9), size=32).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="empty box"):
        alignment_geometry(Detection((5, 5, 5, 5), 0.9))


def test_box_iou_and_detection_scaling():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    d = _face(50, 50, 20).scaled(2.0)
    assert d.box == (80, 80, 120, 120) and d.keypoints["nose"] == pytest.approx((100, 102))
    assert d.size == pytest.approx(40)


def test_tracks_follow_people_and_sort_by_size():
    frames = []
    for t in range(6):
        dets = [_face(100 + 12 * t, 100, 60), _face(400 - 10 * t, 300, 120, conf=0.9)]
        if t == 3:
            dets = dets[1:]  # the small face is missed on one frame
        frames.append(dets[::-1] if t % 2 else dets)  # order within a frame must not matter
    tracks = build_tracks(frames)
    assert len(tracks) == 2
    big, small = tracks
    assert big.positions == [0, 1, 2, 3, 4, 5] and big.mean_size == pytest.approx(120)
    assert small.positions == [0, 1, 2, 4, 5]
    assert all(d.size == pytest.approx(60) for d in small.detections)
    # a face far away is a new person, not a jump of the old track
    tracks = build_tracks([[_face(100, 100, 50)], [_face(600, 500, 50)]])
    assert len(tracks) == 2


def test_a_scene_cut_ends_every_track():
    from data_prep.faces.tracks import scene_cuts

    rng = np.random.default_rng(0)
    shot_a = np.zeros((180, 320, 3), np.uint8)
    shot_a[:] = (200, 60, 40)  # reddish room
    shot_b = np.zeros((180, 320, 3), np.uint8)
    shot_b[:] = (30, 90, 210)  # bluish room
    frames = [np.clip(shot.astype(int) + rng.integers(-20, 20, shot.shape), 0, 255).astype(np.uint8)
              for shot in (shot_a, shot_a, shot_a, shot_b, shot_b)]
    assert scene_cuts(frames) == {3}
    assert scene_cuts(frames[:3]) == set()  # noise and small changes are not cuts
    dets = [[_face(160, 90, 60)] for _ in frames]  # a face at the same place in both shots
    assert [t.positions for t in build_tracks(dets)] == [[0, 1, 2, 3, 4]]
    tracks = build_tracks(dets, cuts=scene_cuts(frames))
    assert sorted(t.positions for t in tracks) == [[0, 1, 2], [3, 4]]


def test_fake_detector_maps_downscaled_detections_back_to_source_pixels():
    frames = [np.zeros((720, 1280, 3), np.uint8), np.zeros((1280, 720, 3), np.uint8)]
    det = FakeDetector(detect_side=320)
    out = det.detect(frames)
    for f, dets in zip(frames, out):
        (d,) = dets
        (ref,) = centred_face(f)
        assert np.allclose(d.box, ref.box, atol=3)
        assert np.allclose(d.keypoints["left_eye"], ref.keypoints["left_eye"], atol=3)
    # filters: min_face (source pixels) and min_confidence
    assert det.detect(frames, min_face=10_000) == [[], []]
    low = FakeDetector(fn=lambda f, i: [_face(50, 50, 40, conf=0.5)])
    assert low.detect(frames[:1], min_confidence=0.6) == [[]]
    with pytest.raises(ValueError, match="frame 0"):
        det.detect([np.zeros((10, 10), np.uint8)])


def test_registry_builds_each_detector_once():
    assert {"mtcnn", "retinaface", "fake"} <= set(available_detectors())
    a = get_detector("fake", min_face=5.0)
    assert get_detector("fake", min_face=5.0) is a
    assert get_detector("fake", min_face=6.0) is not a
    with pytest.raises(ValueError, match="unknown face detector 'nope'"):
        get_detector("nope")


def _real_face():
    import cv2

    path = shared_path("mesonet", "test_images", "real", "real00240.jpg")
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    # the test faces are tight 256 crops: put one in a larger frame like a video frame
    frame = np.full((480, 640, 3), 30, np.uint8)
    frame[100:356, 200:456] = img
    return frame


def _check_real_detection(dets):
    assert len(dets) == 1, dets
    (d,) = dets
    assert d.confidence > 0.9
    assert box_iou(d.box, (200, 100, 456, 356)) > 0.3
    le, re_ = d.keypoints["left_eye"], d.keypoints["right_eye"]
    assert le[0] < re_[0] and d.keypoints["nose"][1] < d.keypoints["mouth_left"][1]


def test_retinaface_finds_the_real_face():
    pytest.importorskip("onnxruntime")
    _check_real_detection(get_detector("retinaface").detect([_real_face()])[0])


def test_mtcnn_finds_the_real_face():
    frame = _real_face()
    _check_real_detection(get_detector("mtcnn").detect([frame])[0])


def test_retinaface_input_is_the_same_numbers_as_stack_flip_subtract():
    pytest.importorskip("onnxruntime")
    det = get_detector("retinaface")
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(np.ascontiguousarray(frames[0][:, ::-1])[::1])  # a flipped copy
    frames.append(rng.integers(0, 256, (74, 106, 3), dtype=np.uint8)[::2, ::2])  # strided view
    want = np.stack(frames)[..., ::-1].astype(np.float32) - np.float32([104, 117, 123])
    want = np.ascontiguousarray(want.transpose(0, 3, 1, 2))
    got = det._blob(frames)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def test_retinaface_small_inputs_run_on_one_thread_with_the_same_result(monkeypatch):
    pytest.importorskip("onnxruntime")
    from data_prep.faces.detectors import RetinaFaceDetector

    det = RetinaFaceDetector()
    assert det._sess_small is not det._sess
    frame = _real_face()  # 480x640: over SMALL_INPUT, runs on the session of all threads
    used = []
    for attr in ("_sess", "_sess_small"):
        sess = getattr(det, attr)
        monkeypatch.setattr(det, attr, type("Spy", (), {"run": staticmethod(
            lambda names, feeds, s=sess, a=attr: used.append(a) or s.run(names, feeds))})())
    big = det.detect([frame], detect_side=None)[0]
    small = det.detect([frame], detect_side=400)[0]  # 300x400: one thread
    det.detect([np.zeros((360, 640, 3), np.uint8)], detect_side=None)  # the limit: one thread
    det.detect([np.zeros((362, 640, 3), np.uint8)], detect_side=None)  # over it
    assert used == ["_sess", "_sess_small", "_sess_small", "_sess"]
    _check_real_detection(big)
    _check_real_detection(small)
    x = det._blob([frame])
    a = RetinaFaceDetector(threads=1)
    assert a._sess_small is a._sess
    for u, v in zip(a._sess.run(None, {"input": x}), RetinaFaceDetector(threads=2)._sess_small
                    .run(None, {"input": x})):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_retinaface_threads_are_checked(bad):
    pytest.importorskip("onnxruntime")
    from data_prep.faces.detectors import RetinaFaceDetector

    with pytest.raises(ValueError, match=f"threads .*{bad!r}"):
        RetinaFaceDetector(threads=bad)
