"""Group per-frame detections into per-person tracks by box overlap.

Frames are visited in order; each detection joins the active track whose last box overlaps
it most (IoU >= ``iou_threshold``, or, for the sparse samples of a long video where a moving
face may not overlap its previous box, centres closer than ``centre_dist`` x the face size),
matched greedily best-first, one detection per track per frame; unmatched detections start
new tracks. Tracks are sorted by mean face size, largest first (track 0 = largest face).

A scene cut ends every track: a face at the same place after a cut is usually another person.
:func:`scene_cuts` finds cuts between consecutive sampled frames by the Bhattacharyya distance
of their hue-saturation histograms (:data:`SCENE_CUT_DISTANCE`; within one shot of the 17
development clips the largest distance between consecutive samples was 0.22).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from data_prep.faces.detectors import Detection

SCENE_CUT_DISTANCE = 0.5


@dataclass
class Track:
    positions: list[int] = field(default_factory=list)  # positions in the frame list
    detections: list[Detection] = field(default_factory=list)

    @property
    def mean_size(self) -> float:
        return float(np.mean([d.size for d in self.detections])) if self.detections else 0.0

    def __len__(self) -> int:
        return len(self.detections)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _affinity(a: Detection, b: Detection, iou_threshold: float, centre_dist: float) -> float:
    """Match score in (0, 2] (IoU matches rank above centre-distance matches), 0 = no match."""
    iou = box_iou(a.box, b.box)
    if iou >= iou_threshold:
        return 1.0 + iou
    ca = np.array([(a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2])
    cb = np.array([(b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2])
    size = max(a.size, b.size, 1e-6)
    ratio = min(a.size, b.size) / size
    d = float(np.linalg.norm(ca - cb)) / size
    if d < centre_dist and ratio > 0.5:
        return 1.0 - d / centre_dist
    return 0.0


def scene_cuts(frames: Sequence[np.ndarray], threshold: float = SCENE_CUT_DISTANCE) -> set[int]:
    """Positions ``p`` where frame ``p`` starts a new shot (it differs from frame ``p - 1``)."""
    def hist(frame):
        small = cv2.resize(np.ascontiguousarray(frame), (160, 90), interpolation=cv2.INTER_AREA)
        h = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 8],
                         [0, 180, 0, 256])
        return cv2.normalize(h, h).flatten()

    hists = [hist(f) for f in frames]
    return {p for p in range(1, len(hists))
            if cv2.compareHist(hists[p - 1], hists[p], cv2.HISTCMP_BHATTACHARYYA) > threshold}


def build_tracks(detections: Sequence[Sequence[Detection]], iou_threshold: float = 0.3,
                 centre_dist: float = 0.5, max_gap: int = 4,
                 cuts: set[int] | frozenset = frozenset()) -> list[Track]:
    """Tracks over ``detections`` (one list per frame), largest mean face first.

    A track not matched for more than ``max_gap`` consecutive frames is closed, and every
    track is closed at a position in ``cuts`` (see :func:`scene_cuts`).
    """
    tracks: list[Track] = []
    active: list[int] = []
    for pos, dets in enumerate(detections):
        if pos in cuts:
            active = []
        pairs = []
        for ti in active:
            last = tracks[ti].detections[-1]
            for di, d in enumerate(dets):
                score = _affinity(last, d, iou_threshold, centre_dist)
                if score > 0:
                    pairs.append((score, ti, di))
        used_t, used_d = set(), set()
        for _, ti, di in sorted(pairs, reverse=True):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tracks[ti].positions.append(pos)
            tracks[ti].detections.append(dets[di])
        for di, d in enumerate(dets):
            if di not in used_d:
                tracks.append(Track([pos], [d]))
                active.append(len(tracks) - 1)
        active = [ti for ti in active if pos - tracks[ti].positions[-1] <= max_gap]
    return sorted(tracks, key=lambda t: -t.mean_size)
