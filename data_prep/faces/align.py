"""MesoNet-style face alignment: a square, roll-corrected crop around the facial keypoints.

As in MesoNet's ``pipeline.py`` (``find_coordinates`` / ``get_aligned_face``):

* centre ``C`` near the nose: ``0.5*nose + 0.25*eye_mid + 0.25*mouth_mid`` (MesoNet used the
  mean of the nose tip and nose bridge, which the five-point detectors do not give);
* face scale ``l = K * max(eye distance, eye-mid to mouth-mid distance)`` with ``K = 2.2``;
* roll: the image is rotated about ``C`` so that the eyes are level;
* the crop side is ``l * margin`` (margin 1.3), resized to ``size`` x ``size`` RGB uint8;
  parts outside the frame are black.

Without keypoints the crop falls back to the box centre and ``max(box w, h) * margin``.

``centre`` moves the crop's centre ``centre * l`` along the face's vertical axis (towards the
chin when positive): MesoNet's own centre, the middle of the nose, lies 0.033 ``l`` above
``C`` (``dfd.framing.MESONET_CENTRE``, measured against the authors' pipeline).

The framing (``margin``, ``centre``) is part of a model's input contract: see :mod:`dfd.framing`, the one
home of the framing constants and of re-framing.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from data_prep.faces.detectors import Detection
from dfd import framing, schema

K_FACE = 2.2


def alignment_geometry(det: Detection, margin: float = framing.MESONET_MARGIN,
                       centre: float = 0.0) -> tuple[float, float, float, float]:
    """``(cx, cy, side, roll_degrees)`` of the aligned crop of ``det`` in frame pixels, its
    centre moved ``centre`` face scales along the face's vertical axis."""
    kp = det.keypoints
    if all(k in kp for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")):
        le, re_ = np.asarray(kp["left_eye"], float), np.asarray(kp["right_eye"], float)
        nose = np.asarray(kp["nose"], float)
        mouth = (np.asarray(kp["mouth_left"], float) + np.asarray(kp["mouth_right"], float)) / 2
        eyes = (le + re_) / 2
        mid = 0.5 * nose + 0.25 * eyes + 0.25 * mouth
        scale = K_FACE * max(np.linalg.norm(re_ - le), np.linalg.norm(mouth - eyes))
        roll = math.degrees(math.atan2(re_[1] - le[1], re_[0] - le[0]))
        # a detector that swapped the eyes would give |roll| > 90: keep the crop upright
        if roll > 90:
            roll -= 180
        elif roll < -90:
            roll += 180
        side = scale * margin
        if side >= 4:
            r = math.radians(roll)
            move = centre * scale  # down the face: the eye line turned by +90 degrees
            return (float(mid[0] - move * math.sin(r)), float(mid[1] + move * math.cos(r)),
                    float(side), float(roll))
    x0, y0, x1, y1 = det.box
    scale = max(x1 - x0, y1 - y0)
    side = scale * margin
    if not side > 0:
        raise ValueError(f"cannot align a face with an empty box {det.box}")
    return (x0 + x1) / 2, (y0 + y1) / 2 + centre * scale, float(side), 0.0


def align_face(frame: np.ndarray, detection: Detection, size: int = schema.FACE_SIZE,
               margin: float = framing.MESONET_MARGIN, centre: float = 0.0) -> np.ndarray:
    """The aligned ``size`` x ``size`` x 3 uint8 RGB crop of ``detection`` in ``frame``."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3, got shape {frame.shape}")
    cx, cy, side, roll = alignment_geometry(detection, margin, centre)
    s = size / side
    if s < 0.5:
        # big downscale: area-average a region around the face to twice the final
        # resolution first (warpAffine alone would alias)
        r = int(math.ceil(side * 0.75)) + 2  # covers the rotated square
        x0, y0 = max(0, int(cx) - r), max(0, int(cy) - r)
        region = frame[y0:int(cy) + r, x0:int(cx) + r]
        if region.size:
            pre = 2 * s
            frame = cv2.resize(region, (max(1, round(region.shape[1] * pre)),
                                        max(1, round(region.shape[0] * pre))),
                               interpolation=cv2.INTER_AREA)
            cx, cy, s = (cx - x0) * pre, (cy - y0) * pre, 0.5
    m = cv2.getRotationMatrix2D((cx, cy), roll, s)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    out = cv2.warpAffine(np.ascontiguousarray(frame), m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out.astype(np.uint8, copy=False)
