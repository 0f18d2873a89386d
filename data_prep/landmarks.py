"""Facial landmarks stored in the shards: the detector's five keypoints in face-crop coordinates.

Self-blended fakes (:mod:`dfd.training.sbi`) need to know where the face is on each real
crop. ``dfd prep`` computes this once and stores it in the shards (``landmarks`` and
``crop_box`` of :mod:`dfd.schema`), in coordinates of the crop scaled to [0, 1]:

* faces cut from videos: :func:`crop_coordinates` maps the keypoints and box of the detection
  a crop was aligned on through the same alignment (centre, scale, roll) as
  :func:`data_prep.faces.align.align_face` — no second detection;
* crop sets (images that already are faces): :class:`CropLandmarker` runs the face detector
  once on each crop, pasted in the middle of a black canvas ``canvas`` times its size
  (RetinaFace, like most detectors, misses a face that fills the whole image: see
  ``bench/crop_margin.py``), and keeps the detection nearest the crop centre. Measured on
  100 DFDC crops (224 px) on this 2-core machine: all 100 found, about 15 crops/s, so
  ``dfd prep`` runs it on the REAL crops only by default (``PrepConfig.crop_landmarks``).

Where no face is found the row is ``None``, stored as the schema's "absent" marker (all
``-1``); SBI then falls back to a box-derived mask.

Why five points and not a dense (68- or 468-point) landmark model: no pip wheel that fits
this package ships one that runs without a download. Checked: ``mediapipe`` 1.x wheels hold
no face model (its tasks API downloads ``face_landmarker.task``); ``mediapipe`` 0.10.21 ships
``face_landmark.tflite`` (468 points, 1.2 MB) but requires ``numpy<2``, ``protobuf<5``,
``jax`` and ``opencv-contrib-python``, which clash with this package's TensorFlow and
OpenCV; ``face-recognition-models`` ships dlib's 68-point predictor (~100 MB) but needs a
compiled ``dlib``; ``face-alignment``, ``insightface``, ``uniface`` and ``facexlib``
download their weights at run time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import cv2
import numpy as np

from data_prep.faces.align import alignment_geometry
from data_prep.faces.detectors import KEYPOINTS, Detection, FaceDetector, get_detector
from dfd import framing, schema

log = logging.getLogger(__name__)


def _frame_to_crop(margin: float, det: Detection, centre: float = 0.0) -> np.ndarray:
    """The 2x3 affine map from frame pixels to [0, 1] coordinates of ``det``'s aligned crop."""
    cx, cy, side, roll = alignment_geometry(det, margin, centre)
    m = cv2.getRotationMatrix2D((cx, cy), roll, 1.0 / side)
    m[0, 2] += 0.5 - cx
    m[1, 2] += 0.5 - cy
    return m


def crop_coordinates(det: Detection, margin: float = framing.MESONET_MARGIN,
                     centre: float = 0.0) -> tuple[np.ndarray | None, np.ndarray]:
    """``(landmarks, crop_box)`` of ``det`` in its aligned crop (:func:`align_face` with the
    same ``margin`` and ``centre``), in [0, 1] crop coordinates.

    ``landmarks`` is ``float32[5, 2]`` in :data:`~data_prep.faces.detectors.KEYPOINTS` order,
    or None when the detection has no keypoints; ``crop_box`` is the axis-aligned bounds of
    the detector's box as the (rotated) crop shows it, ``float32[4]``.
    """
    m = _frame_to_crop(margin, det, centre)
    x0, y0, x1, y1 = det.box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    c = corners @ m[:, :2].T + m[:, 2]
    box = np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()], np.float32)
    if not all(k in det.keypoints for k in KEYPOINTS):
        return None, box
    pts = np.array([det.keypoints[k] for k in KEYPOINTS], np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32), box


class CropLandmarker:
    """Five keypoints and the face box of face crops, by running a face detector on each.

    ``landmarker(images)`` takes RGB uint8 crops (any sizes) and returns, per crop,
    ``(landmarks float32[5, 2], crop_box float32[4])`` in [0, 1] crop coordinates, or
    ``(None, None)`` where no face was found.
    """

    def __init__(self, detector: FaceDetector | str = "default", canvas: float = 1.5,
                 min_face: float = 0.25, min_confidence: float = 0.8,
                 detect_side: int | None = 640):
        if not canvas >= 1.0:
            raise ValueError(f"canvas must be >= 1 (times the crop size), got {canvas!r}")
        if not 0.0 <= min_face < 1.0:
            raise ValueError(f"min_face must be a fraction of the crop side in [0, 1), "
                             f"got {min_face!r}")
        self._detector = detector
        self.canvas = float(canvas)
        self.min_face = float(min_face)
        self.min_confidence = float(min_confidence)
        self.detect_side = detect_side

    @property
    def detector(self) -> FaceDetector:
        if isinstance(self._detector, str):
            self._detector = get_detector(self._detector)
        return self._detector

    def add_to(self, rec):
        """``rec`` (a :class:`dfd.schema.FaceRecord` of encoded crops) with the landmarks and
        face box of each of its crops filled in (None where no face was found)."""
        found = self([schema.decode_image(f) for f in rec.faces])
        return dataclasses.replace(rec, landmarks=[lm for lm, _ in found],
                                   crop_boxes=[box for _, box in found])

    def __call__(self, images: Sequence[np.ndarray]
                 ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        if not len(images):
            return []
        canvases, offsets = [], []
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"crop {i} must be an HxWx3 RGB array, got "
                                 f"{getattr(img, 'shape', type(img))}")
            h, w = img.shape[:2]
            ch, cw = int(round(h * self.canvas)), int(round(w * self.canvas))
            oy, ox = (ch - h) // 2, (cw - w) // 2
            canvas = np.zeros((ch, cw, 3), np.uint8)
            canvas[oy:oy + h, ox:ox + w] = img
            canvases.append(canvas)
            offsets.append((ox, oy, w, h))
        min_side = min(min(img.shape[:2]) for img in images) * self.min_face
        found = self.detector.detect(canvases, detect_side=self.detect_side, min_face=min_side,
                                     min_confidence=self.min_confidence)
        out = []
        for dets, (ox, oy, w, h) in zip(found, offsets):
            dets = [d for d in dets if all(k in d.keypoints for k in KEYPOINTS)]
            if not dets:
                out.append((None, None))
                continue
            # the crop's own face: nearest the crop centre, then the largest
            ccx, ccy = ox + w / 2, oy + h / 2
            d = min(dets, key=lambda d: (np.hypot((d.box[0] + d.box[2]) / 2 - ccx,
                                                  (d.box[1] + d.box[3]) / 2 - ccy)
                                         / max(w, h) // 0.1, -d.size))
            scale = np.array([w, h], np.float64)
            pts = (np.array([d.keypoints[k] for k in KEYPOINTS], np.float64)
                   - (ox, oy)) / scale
            box = ((np.array(d.box, np.float64).reshape(2, 2) - (ox, oy)) / scale).ravel()
            out.append((pts.astype(np.float32), box.astype(np.float32)))
        return out
