"""Face detection, tracking and MesoNet-style alignment (heavy imports stay lazy)."""

from data_prep.faces.align import align_face, alignment_geometry
from data_prep.faces.detectors import (
    DEFAULT_DETECTOR,
    KEYPOINTS,
    Detection,
    FaceDetector,
    FakeDetector,
    MTCNNDetector,
    RetinaFaceDetector,
    available_detectors,
    centred_face,
    get_detector,
    register_detector,
)
from data_prep.faces.tracks import Track, box_iou, build_tracks

__all__ = [
    "DEFAULT_DETECTOR", "KEYPOINTS", "Detection", "FaceDetector", "FakeDetector",
    "MTCNNDetector", "RetinaFaceDetector", "Track", "align_face", "alignment_geometry",
    "available_detectors", "box_iou", "build_tracks", "centred_face", "get_detector",
    "register_detector",
]
