"""Landmarks in the shards: the optional schema features, their mapping into face crops made
from videos, the detector run on crop sets, and old shards without them still reading."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pandas as pd
import pytest

from data_prep.faces import KEYPOINTS, Detection, FakeDetector, align_face, centred_face
from data_prep.landmarks import CropLandmarker, crop_coordinates
from dfd import readers, schema


def _png(value: int, size: int = 16) -> bytes:
    return schema.encode_png(np.full((size, size, 3), value, np.uint8))


LM = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.7], [0.65, 0.7]], np.float32)


def test_landmarks_round_trip_with_absent_rows():
    rec = schema.FaceRecord(video_id="v", label=0, faces=[_png(1), _png(2)], frame_indices=[0, 1],
                            landmarks=[LM, None], crop_boxes=[(0.1, 0.2, 0.9, 0.95), None])
    back = schema.decode_record(schema.encode_record(rec))
    assert back["landmarks"].shape == (2, 5, 2) and back["crop_box"].shape == (2, 4)
    assert np.allclose(back["landmarks"][0], LM)
    assert np.all(back["landmarks"][1] == schema.ABSENT)
    assert np.allclose(back["crop_box"][0], (0.1, 0.2, 0.9, 0.95))
    assert list(schema.has_landmarks(back["landmarks"])) == [True, False]


def test_records_without_landmarks_read_as_absent():
    rec = schema.FaceRecord(video_id="old", label=1, faces=[_png(3)] * 3, frame_indices=[0, 1, 2])
    raw = schema.encode_record(rec)
    import tensorflow as tf

    # what a shard written before the feature existed holds: no landmarks / crop_box lists
    ex = tf.train.SequenceExample.FromString(raw)
    assert schema.LANDMARKS not in ex.feature_lists.feature_list
    back = schema.decode_record(raw)
    assert back["landmarks"].shape == (3, 5, 2) and np.all(back["landmarks"] == schema.ABSENT)
    assert back["crop_box"].shape == (3, 4) and np.all(back["crop_box"] == schema.ABSENT)


def test_old_and_new_records_read_together(tmp_path):
    from data_prep.shard_writer import ShardWriter

    with ShardWriter(tmp_path, "mix", max_records=8) as w:
        w.add(schema.FaceRecord(video_id="old", label=0, faces=[_png(5)], frame_indices=[0]))
        w.add(schema.FaceRecord(video_id="new", label=0, faces=[_png(9)] * 2, frame_indices=[0, 4],
                                landmarks=[LM, LM * 0.5]))
    schema.write_index(tmp_path, w.committed)
    els = list(readers.frame_dataset(tmp_path, face_size=16).as_numpy_iterator())
    by = {(e["video_id"].decode(), int(e["frame_index"])): e for e in els}
    assert np.all(by[("old", 0)]["landmarks"] == -1)
    assert np.allclose(by[("new", 4)]["landmarks"], LM * 0.5)
    assert np.all(by[("new", 0)]["crop_box"] == -1)  # landmarks given, box not: absent


def test_bad_landmark_rows_are_refused():
    with pytest.raises(ValueError, match=r"landmarks\[0\] must be 10 finite numbers"):
        schema.FaceRecord(video_id="v", label=0, faces=[_png(1)], frame_indices=[0],
                          landmarks=[[0.1, 0.2]])
    with pytest.raises(ValueError, match="1 faces but 2 landmarks"):
        schema.FaceRecord(video_id="v", label=0, faces=[_png(1)], frame_indices=[0],
                          landmarks=[LM, LM])


def _dotted_frame(det: Detection, shape=(240, 320)):
    """A black frame with one distinctly coloured dot on each keypoint of ``det``."""
    frame = np.zeros(shape + (3,), np.uint8)
    for j, k in enumerate(KEYPOINTS):
        x, y = det.keypoints[k]
        cv2.circle(frame, (int(round(x)), int(round(y))), 3, (50 * (j + 1), 255, 0), -1)
    return frame


@pytest.mark.parametrize("roll", [0.0, 25.0])
def test_keypoints_map_onto_the_aligned_crop(roll):
    base = centred_face(np.zeros((240, 320, 3), np.uint8), frac=0.5)[0]
    # roll the face about the frame centre
    t = np.radians(roll)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    kp = {k: tuple(rot @ (np.array(v) - (160, 120)) + (160, 120)) for k, v in base.keypoints.items()}
    det = Detection(base.box, 0.99, kp)
    frame = _dotted_frame(det)
    size, margin = 128, 1.3
    crop = align_face(frame, det, size=size, margin=margin)
    lm, box = crop_coordinates(det, margin)
    assert lm.shape == (5, 2) and box.shape == (4,)
    for j in range(5):
        x, y = np.round(lm[j] * size).astype(int)  # pixel i is centred on coordinate i
        patch = crop[y - 1:y + 2, x - 1:x + 2]
        assert patch[..., 1].min() > 150, (KEYPOINTS[j], lm[j])  # the dot is there
        assert abs(int(patch[1, 1, 0]) - 50 * (j + 1)) < 30  # and it is the right one
    assert lm[0, 0] < lm[1, 0] and abs(lm[0, 1] - lm[1, 1]) < 0.01  # eyes level in the crop
    assert box[0] < lm[:, 0].min() and lm[:, 0].max() < box[2] and box[1] < lm[:, 1].min()


def test_crop_coordinates_without_keypoints_give_only_the_box():
    lm, box = crop_coordinates(Detection((10, 10, 60, 70), 0.9), 1.3)
    assert lm is None
    # box fallback: crop side = 1.3 * max side, centred on the box
    assert np.allclose(box, [0.5 - 25 / 78, 0.5 - 30 / 78, 0.5 + 25 / 78, 0.5 + 30 / 78],
                       atol=1e-5)


def test_crop_landmarker_maps_detections_back_to_the_crop():
    crops = [np.full((40, 40, 3), 90, np.uint8), np.full((60, 50, 3), 90, np.uint8)]
    out = CropLandmarker(FakeDetector(), canvas=2.0, min_face=0.0)(crops)
    for (lm, box), crop in zip(out, crops):
        h, w = crop.shape[:2]
        # FakeDetector puts a face of side 0.4 * canvas height in the canvas centre
        ref = centred_face(np.zeros((2 * h, 2 * w, 3)))[0]
        want = (np.array([ref.keypoints[k] for k in KEYPOINTS]) - (w / 2, h / 2)) / (w, h)
        assert np.allclose(lm, want, atol=1e-4)
        assert np.allclose(box, ((np.array(ref.box).reshape(2, 2) - (w / 2, h / 2)) / (w, h))
                           .ravel(), atol=1e-4)
    none = CropLandmarker(FakeDetector(fn=lambda f, i: []))(crops[:1])
    assert none == [(None, None)]
    with pytest.raises(ValueError, match="crop 0 must be an HxWx3"):
        CropLandmarker(FakeDetector())([np.zeros((4, 4))])


def test_crop_landmarker_finds_the_astronaut_keypoints():
    pytest.importorskip("onnxruntime")
    skd = pytest.importorskip("skimage.data")
    img = skd.astronaut()
    crop = img[40:200, 150:300]  # a tight face crop, like a crop set's
    ((lm, box),) = CropLandmarker("retinaface")([np.ascontiguousarray(crop)])
    assert lm is not None, "RetinaFace found no face on the astronaut crop"
    assert np.all((lm > 0) & (lm < 1))
    assert lm[0, 0] < lm[1, 0] and lm[2, 1] < lm[3, 1]  # eyes left-right, nose above mouth
    assert box[0] < lm[:, 0].min() and box[2] > lm[:, 0].max()


def _crop_set(root, n=4):
    root.mkdir()
    rows = []
    with tarfile.open(root / "faces-00.tar", "w") as tar:
        for i in range(n):
            ok, buf = cv2.imencode(".jpg", np.full((48, 48, 3), 40 * i, np.uint8))
            data = buf.tobytes()
            info = tarfile.TarInfo(f"img{i}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            rows.append({"file": f"img{i}.jpg", "label": "FAKE" if i == 3 else "REAL", "original": f"o{i}.mp4",
                         "archive": "faces-00.tar"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_prep_stores_crop_landmarks(tmp_path):
    from data_prep import prep

    src = _crop_set(tmp_path / "crops")
    out = tmp_path / "shards"
    prep.run_prep(prep.PrepConfig(sources=[str(src)], out_dir=str(out), detector="fake"))
    els = list(readers.frame_dataset(out, face_size=48).as_numpy_iterator())
    assert len(els) == 4
    for e in els:
        if e["label"] == 1:  # by default only REAL crops (what SBI uses) are searched
            assert not schema.has_landmarks(e["landmarks"])
            continue
        assert schema.has_landmarks(e["landmarks"]) and np.all(e["crop_box"] >= 0)
        assert e["landmarks"][0, 0] < e["landmarks"][1, 0]
    for mode, want in (("all", 4), ("none", 0)):
        o = tmp_path / mode
        prep.run_prep(prep.PrepConfig(sources=[str(src)], out_dir=str(o), detector="fake",
                                      crop_landmarks=mode))
        els = list(readers.frame_dataset(o, face_size=48).as_numpy_iterator())
        assert sum(bool(schema.has_landmarks(e["landmarks"])) for e in els) == want
    with pytest.raises(ValueError, match="crop_landmarks must be"):
        prep.PrepConfig(crop_landmarks="yes")


def test_video_records_carry_crop_landmarks(tiny_video_factory):
    from data_prep.extract import ExtractConfig, extract_faces, to_face_records

    clip = tiny_video_factory("lm.mp4", frames=12, size=(160, 120))
    cfg = ExtractConfig(n_frames=3, face_size=32, min_face=10, sampler="uniform")
    vf = extract_faces(clip, FakeDetector(), cfg)
    (rec,) = to_face_records(vf, "lm.mp4", label=0)
    back = schema.decode_record(schema.encode_record(rec))
    assert back["landmarks"].shape == (3, 5, 2) and schema.has_landmarks(back["landmarks"]).all()
    want, box = crop_coordinates(centred_face(np.zeros((120, 160, 3)))[0], cfg.margin)
    assert np.allclose(back["landmarks"][0], want, atol=1e-5)
    assert np.allclose(back["crop_box"][1], box, atol=1e-5)
