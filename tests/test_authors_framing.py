"""The authors' MesoNet weights behind ``dfd detect``'s framing, on the shared labelled videos.

MesoNet's own pipeline (``pipeline.py`` of the authors' release) cuts a square of side
``1.3 * 2.2 * max(eye distance, eye-to-mouth distance)`` around the middle of the nose,
rotated so the face is upright. ``data_prep.faces.align`` follows the same rule from the five
RetinaFace keypoints; ``bench/framing.py`` measures what each step changes (see
docs/faces.md). These tests pin the geometry, and the score ranking the authors' Meso4_DF
weights reach through ``dfd detect`` on the 15 labelled clips of ``../shared/data``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from data_prep.faces import Detection, alignment_geometry
from dfd.framing import MESONET_CENTRE, MESONET_MARGIN
from tests.conftest import shared_path


def test_alignment_follows_mesonets_rule():
    kp = {"left_eye": (100.0, 100.0), "right_eye": (160.0, 100.0), "nose": (130.0, 135.0),
          "mouth_left": (108.0, 170.0), "mouth_right": (152.0, 170.0)}
    det = Detection(box=(80.0, 60.0, 180.0, 190.0), confidence=0.99, keypoints=kp)
    cx, cy, side, roll = alignment_geometry(det, MESONET_MARGIN)
    eye_d, eye_mouth = 60.0, 70.0
    assert side == pytest.approx(1.3 * 2.2 * max(eye_d, eye_mouth))
    assert roll == pytest.approx(0.0)
    # the centre sits on the nose, between the eye line and the mouth (MesoNet: the middle of
    # the nose bridge and tip): within 5% of the crop side of the nose keypoint
    assert cx == pytest.approx(130.0) and abs(cy - 135.0) < 0.05 * side
    tilted = {k: (130 + (x - 130) * math.cos(0.3) - (y - 135) * math.sin(0.3),
                  135 + (x - 130) * math.sin(0.3) + (y - 135) * math.cos(0.3))
              for k, (x, y) in kp.items()}
    roll_t = alignment_geometry(Detection(det.box, 0.99, tilted), MESONET_MARGIN)[3]
    assert roll_t == pytest.approx(math.degrees(0.3), abs=1e-6)


def _labelled_clips():
    root = shared_path("data")
    meta = json.loads((root / "dfdc_videos" / "metadata.json").read_text())
    clips = [(root / "dfdc_videos" / k, int(v["label"] == "FAKE")) for k, v in sorted(meta.items())]
    for line in (root / "other_videos" / "labels.csv").read_text().splitlines()[1:]:
        name, label = line.split(",")[:2]
        if label in ("REAL", "FAKE"):
            clips.append((root / "other_videos" / name, int(label == "FAKE")))
    return clips


def test_authors_weights_through_dfd_detect_behave_as_behind_their_pipeline(monkeypatch):
    """The authors' own pipeline (dlib's 68 landmarks, ``bench/framing_dlib.py``, 16 frames)
    gives Meso4_DF a mean P(fake) of 0.43-0.47 on the 9 FAKE clips and 0.16-0.19 on the 6 REAL
    ones, ROC-AUC 0.81-0.83. Through ``dfd detect`` (8 uniform frames, measured 2026-12-04):
    0.466 / 0.183, ROC-AUC 0.833 with MesoNet's centre in the preset; 0.373 / 0.149, 0.815
    with the crop centred on our alignment centre, as before. The FAKE pin (>= 0.42) fails
    without the centre; the ROC-AUC pin is well below the figure, since 15 clips give a wide
    interval."""
    from sklearn.metrics import roc_auc_score

    from dfd import presets
    from dfd_app.detect import pipeline

    monkeypatch.setenv(presets.ENV_DIR, str(shared_path("mesonet", "weights")))
    clips = _labelled_clips()
    assert len(clips) == 15
    ctx = pipeline.build_context(model="meso4_df", n_frames=8, sampler="uniform")
    # the authors' framing, from the preset
    assert (ctx.extract_cfg.margin, ctx.extract_cfg.centre) == (MESONET_MARGIN, MESONET_CENTRE)
    y, p = [], []
    for path, label in clips:
        rec = pipeline.detect_video(str(path), ctx)
        if rec["status"] != "ok":
            continue
        y.append(label)
        p.append(rec["p_fake"])
    assert len(y) >= 14
    auc = roc_auc_score(y, p)
    assert auc >= 0.65, (auc, list(zip(y, np.round(p, 3))))
    y, p = np.array(y), np.array(p)
    assert p[y == 1].mean() >= 0.42, list(zip(y, np.round(p, 3)))


def test_alignment_recovers_the_authors_own_crops():
    """The four aligned faces of the authors' release (``../shared/mesonet/test_images``) are
    crops of MesoNet's own pipeline (dlib's 68 landmarks, before the resize to 256). Placed on a
    grey canvas and detected, our rule from RetinaFace's five keypoints should cut the same
    square. Measured (2026-12-03): centres within 0.03 of the side, our side 0.80, 0.88, 1.02
    and 0.995 of theirs (mean 0.92): the same crop on the two REAL faces, 12-20% tighter on
    the two FAKE ones (one shouting, mouth wide open). The pins hold that measurement."""
    from PIL import Image

    from data_prep.faces import get_detector

    detector = get_detector("default", detect_side=None, min_face=20)
    ratios = []
    for path in sorted(shared_path("mesonet", "test_images").glob("*/*.jpg")):
        img = np.asarray(Image.open(path).convert("RGB"))
        s = img.shape[0]
        canvas = np.full((3 * s, 3 * s, 3), 127, np.uint8)
        canvas[s:2 * s, s:2 * s] = img
        det = max(detector.detect([canvas])[0], key=lambda d: d.size)
        cx, cy, side, roll = alignment_geometry(det, MESONET_MARGIN)
        assert abs(cx - 1.5 * s) < 0.05 * s and abs(cy - 1.5 * s) < 0.05 * s, (path.name, cx, cy, s)
        assert abs(roll) < 6, (path.name, roll)
        ratios.append(side / s)
    assert len(ratios) == 4
    assert 0.75 < min(ratios) and max(ratios) < 1.1, ratios
    assert 0.85 < float(np.mean(ratios)) < 1.0, ratios
