"""Quality facts of a scored video (dfd_app.detect.quality)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfd_app.detect import quality


def _face(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((256, 256, 3), 128, np.uint8)
    for _ in range(40):
        x, y = rng.integers(20, 236, 2)
        cv2.circle(img, (int(x), int(y)), int(rng.integers(3, 12)),
                   tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return img


def test_sharpness_drops_when_the_face_is_blurred():
    sharp = np.stack([_face(i) for i in range(3)])
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 4) for f in sharp])
    assert quality.sharpness(sharp) > 5 * quality.sharpness(blurred)
    assert quality.sharpness(np.zeros((0, 8, 8, 3), np.uint8)) is None


def test_sharpness_reads_the_same_at_any_model_input_size():
    # the same blurred faces cut at 256 px (MesoNet) and at 128 px (EfficientNet-Lite0):
    # measured on the model-size crops as they are, the smaller reads several times sharper
    # and a blurred face would escape its warning
    big = np.stack([cv2.GaussianBlur(_face(i), (0, 0), 3) for i in range(3)])
    small = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in big])
    a, b = quality.sharpness(big), quality.sharpness(small)
    assert a < quality.MIN_SHARPNESS and b < quality.MIN_SHARPNESS
    assert 0.5 < b / a < 1.5, (a, b)


def test_facts_and_warnings(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 1000)
    faces = np.stack([cv2.GaussianBlur(_face(i), (0, 0), 6) for i in range(2)])
    q = quality.facts(video, faces, [[0, 0, 60, 64], [10, 10, 70, 80]],
                      {"frame_count": 100, "width": 640, "height": 360}, n_frames=32,
                      frames_with_face=2)
    assert q["face_px"] == 67.0 and q["bpp"] == round(8000 / (100 * 640 * 360), 4)
    notes = " | ".join(q["warnings"])
    for part in ("small face (67 px", "blurred face", "heavy compression", "2 of 32"):
        assert part in notes
    good = quality.facts(video, np.stack([_face(0)]), [[0, 0, 300, 320]],
                         {"frame_count": 1, "width": 10, "height": 10}, 32, 30)
    assert good["warnings"] == []
    unknown = quality.facts(tmp_path / "missing.mp4", None, [], {}, 0, 0)
    assert unknown["face_px"] is None and unknown["bpp"] is None and unknown["warnings"] == []


def test_sharpness_is_the_figure_dfd_audit_reports():
    from data_prep.audit import measure_image

    for i in range(3):
        face = cv2.GaussianBlur(_face(i), (0, 0), i) if i else _face(i)
        audit = measure_image(cv2.cvtColor(face, cv2.COLOR_RGB2BGR))["sharpness"]
        assert quality.sharpness(face[None]) == pytest.approx(audit, rel=1e-6)
