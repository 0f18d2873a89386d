"""The per-video job: sample frames, detect faces, group them into tracks, align the crops.

``extract_faces(path, detector, cfg)`` is what ``dfd prep`` runs per video (then
:func:`to_face_records` + the shard writer) and what ``dfd detect`` runs before scoring.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.faces.align import align_face
from data_prep.faces.detectors import Detection, FaceDetector, get_detector
from data_prep.faces.tracks import build_tracks, scene_cuts
from data_prep.landmarks import crop_coordinates
from data_prep.sampling import SAMPLER_MODES, SampledFrames, sample_frames
from dfd import schema

log = logging.getLogger(__name__)


class NoFaceError(ValueError):
    """No face was found in any of the sampled frames of a video."""

    def __init__(self, path, n_frames_searched: int):
        self.path = str(path)
        self.n_frames_searched = n_frames_searched
        super().__init__(f"no face found in {self.path} ({n_frames_searched} frames searched)")


@dataclass
class ExtractConfig:
    n_frames: int = 32
    sampler: str = "keyframe"  # "uniform" (exact) | "keyframe" (fast) | "stride"
    stride: int | None = None  # for sampler="stride"
    detect_side: int | None = 640  # detect on frames whose long side is this (None: full size)
    min_face: float = 40.0  # smallest face side kept, source pixels
    all_faces: bool = False  # False: largest face per frame, one track
    face_size: int = 256
    margin: float = 1.3
    min_confidence: float = 0.9
    min_track_fraction: float = 0.2  # all_faces: drop tracks on fewer of the searched frames

    def __post_init__(self):
        if self.sampler not in SAMPLER_MODES:
            raise ValueError(f"sampler must be one of {SAMPLER_MODES}, got {self.sampler!r}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.face_size < 8:
            raise ValueError(f"face_size must be >= 8, got {self.face_size}")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {self.margin}")


@dataclass
class TrackFaces:
    track: int  # 0 = largest face
    faces: list[np.ndarray]  # face_size x face_size x 3 uint8 RGB
    frame_indices: list[int]
    boxes: list[tuple[float, float, float, float]]  # source-frame pixels
    confidences: list[float]
    keypoints: list[dict] = field(default_factory=list)  # detector keypoints, source pixels
    # the keypoints ([5, 2] or None) and box ([4]) in [0, 1] coordinates of each crop
    landmarks: list = field(default_factory=list)
    crop_boxes: list = field(default_factory=list)


@dataclass
class VideoFaces:
    path: str
    fps: float
    frame_count: int
    width: int
    height: int
    sampler: str
    frames_searched: int
    tracks: list[TrackFaces]
    timings: dict = field(default_factory=dict)  # seconds: decode, detect, align

    @property
    def meta(self) -> dict:
        return {"fps": self.fps, "frame_count": self.frame_count, "width": self.width,
                "height": self.height, "sampler": self.sampler}


def _largest_per_frame(dets: list[list[Detection]]) -> list[list[Detection]]:
    return [[max(d, key=lambda x: x.width * x.height)] if d else [] for d in dets]


def faces_from_frames(sampled: SampledFrames, detector: FaceDetector, cfg: ExtractConfig,
                      path: str | Path = "<frames>", timings: dict | None = None) -> VideoFaces:
    """Detect, track and align faces in already sampled frames (see :func:`extract_faces`)."""
    timings = {} if timings is None else timings
    t = time.perf_counter()
    dets = detector.detect(sampled.frames, detect_side=cfg.detect_side, min_face=cfg.min_face,
                           min_confidence=cfg.min_confidence)
    timings["detect"] = time.perf_counter() - t
    n = len(sampled.frames)
    if not any(dets):
        raise NoFaceError(path, n)
    t = time.perf_counter()
    if cfg.all_faces:
        tracks = build_tracks(dets, cuts=scene_cuts(sampled.frames))
        min_len = max(2, math.ceil(cfg.min_track_fraction * n)) if n > 2 else 1
        kept = [tr for tr in tracks if len(tr) >= min_len]
        if not kept:  # faces only on a few frames: still return the biggest one
            kept = tracks[:1]
        tracks = kept
    else:
        tracks = build_tracks(_largest_per_frame(dets), iou_threshold=0.0, centre_dist=1e9,
                              max_gap=n)
        tracks = tracks[:1]
    out = []
    for ti, tr in enumerate(tracks):
        faces = [align_face(sampled.frames[p], d, size=cfg.face_size, margin=cfg.margin)
                 for p, d in zip(tr.positions, tr.detections)]
        out.append(TrackFaces(
            track=ti, faces=faces,
            frame_indices=[int(sampled.indices[p]) for p in tr.positions],
            boxes=[tuple(float(v) for v in d.box) for d in tr.detections],
            confidences=[float(d.confidence) for d in tr.detections],
            keypoints=[dict(d.keypoints) for d in tr.detections]))
        in_crop = [crop_coordinates(d, cfg.margin) for d in tr.detections]
        out[-1].landmarks = [lm for lm, _ in in_crop]
        out[-1].crop_boxes = [box for _, box in in_crop]
    timings["align"] = time.perf_counter() - t
    return VideoFaces(path=str(path), fps=sampled.fps, frame_count=sampled.frame_count,
                      width=sampled.width, height=sampled.height, sampler=sampled.sampler,
                      frames_searched=n, tracks=out, timings=timings)


def extract_faces(path, detector: FaceDetector | str | None = None,
                  cfg: ExtractConfig | None = None) -> VideoFaces:
    """Faces of the video at ``path``: ``cfg.n_frames`` frames over the whole video, detected
    with ``detector`` (an instance, or a registry name; None = the default detector), aligned
    to ``cfg.face_size`` squares. Raises :class:`~data_prep.sampling.VideoReadError` and
    :class:`NoFaceError`."""
    cfg = cfg or ExtractConfig()
    if detector is None or isinstance(detector, str):
        detector = get_detector(detector or "default")
    timings: dict = {}
    t = time.perf_counter()
    sampled = sample_frames(path, n_frames=cfg.n_frames, mode=cfg.sampler, stride=cfg.stride)
    timings["decode"] = time.perf_counter() - t
    vf = faces_from_frames(sampled, detector, cfg, path=path, timings=timings)
    log.debug("%s: %d tracks, %s", path, len(vf.tracks),
              {k: round(v, 3) for k, v in timings.items()})
    return vf


def to_face_records(vf: VideoFaces, video_id: str, label: int, group: str = "",
                    source: str = "", split: str = ""):
    """:class:`dfd.schema.FaceRecord` s (PNG-encoded faces), one per track of ``vf``."""

    return [
        schema.FaceRecord(
            video_id=video_id, label=label, faces=[schema.encode_png(f) for f in tr.faces],
            frame_indices=tr.frame_indices, boxes=tr.boxes, confidences=tr.confidences,
            landmarks=tr.landmarks, crop_boxes=tr.crop_boxes, group=group, source=source, split=split, track=tr.track, fps=vf.fps,
            frame_count=vf.frame_count, sampler=vf.sampler, width=vf.width, height=vf.height)
        for tr in vf.tracks
    ]
