"""The per-video job: sample frames, detect faces, group them into tracks, align the crops.

``extract_faces(path, detector, cfg)`` is what ``dfd prep`` runs per video (then
:func:`to_face_records` + the shard writer) and what ``dfd detect`` runs before scoring.

Two detection paths (``ExtractConfig.detect_every``):

* ``1``: the full detector on every sampled frame (the previous path; also used for
  ``all_faces``);
* ``k > 1`` (default 8): the full detector on every ``k``-th sampled frame, after a scene cut
  and whenever the track is lost; on the frames between, the same detector on a window around
  the face's previous box, cut from the same downscaled frame at a 32-pixel-aligned offset
  (the network's largest stride), so it sees the face at the same scale and on the same grid.
  A window result that does not overlap the previous box, or touches the window's edge, is
  re-detected on the whole frame. Decoding runs in a thread (``overlap``) while the
  detector works on the frames already decoded.

Frames arrive reduced to ``max_pixels`` and upright (see :mod:`data_prep.sampling`); boxes and
keypoints in the results are in source pixels (display orientation).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from data_prep.faces.align import align_face
from data_prep.faces.detectors import (
    Detection,
    FaceDetector,
    detection_scale,
    downscale,
    get_detector,
)
from data_prep.faces.tracks import SCENE_CUT_DISTANCE, box_iou, build_tracks, scene_cuts
from data_prep.landmarks import crop_coordinates
from data_prep.sampling import SAMPLER_MODES, iter_frames
from dfd import framing, schema
from dfd.priority import run_lowered

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
    face_size: int = schema.FACE_SIZE
    margin: float = framing.MESONET_MARGIN
    centre: float = 0.0  # the crop centre moved this many face scales down (dfd.framing)
    min_confidence: float = 0.9
    min_track_fraction: float = 0.2  # all_faces: drop tracks on fewer of the searched frames
    detect_every: int = 8  # full-frame detection on every k-th frame, windows between (1: all)
    overlap: bool = True  # decode in a thread while detecting
    decode_threads: int = 0  # decoder threads: 0 = FFmpeg's choice; 1 = least CPU (prep pools)
    # with overlap: faces are found in a thread this much nicer than the decoder's (Linux; 0:
    # the caller's thread, same priority), so the decoder, the critical path, is not slowed
    face_nice: int = 10
    max_pixels: int | None = 1920 * 1080  # frames are reduced to this many pixels as decoded
    max_decoded_pixels: int | None = None  # refuse videos with more pixels in all (a service cap)
    rotate: bool = True  # apply the stream's display matrix
    min_decoded_fraction: float = 0.9  # under this part of the claimed frames: "partial"

    @classmethod
    def previous_path(cls, **kw) -> ExtractConfig:
        """The path before tracked detection: every frame detected whole, no decode thread."""
        return cls(detect_every=1, overlap=False, **kw)

    def __post_init__(self):
        if self.sampler not in SAMPLER_MODES:
            raise ValueError(f"sampler must be one of {SAMPLER_MODES}, got {self.sampler!r}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.face_size < 8:
            raise ValueError(f"face_size must be >= 8, got {self.face_size}")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {self.margin}")
        self.centre = framing.check_centre(self.centre, "centre")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if (not isinstance(self.face_nice, int) or isinstance(self.face_nice, bool)
                or not 0 <= self.face_nice <= 19):
            raise ValueError(f"face_nice must be a whole number within [0, 19], got "
                             f"{self.face_nice!r}")
        if self.max_pixels is not None and self.max_pixels < 64 * 64:
            raise ValueError(f"max_pixels must be >= {64 * 64} or None, got {self.max_pixels}")
        if not 0.0 <= self.min_decoded_fraction <= 1.0:
            raise ValueError(f"min_decoded_fraction must be within [0, 1], got "
                             f"{self.min_decoded_fraction}")


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
    rotation: int = 0  # display rotation applied (degrees counter-clockwise)
    frames_claimed: int = 0  # frames the container claims
    frames_decoded: int = 0  # frames that decoded
    partial: bool = False  # under ExtractConfig.min_decoded_fraction of the claim decoded
    detect_calls: dict = field(default_factory=dict)  # detector runs: full frames, windows

    @property
    def meta(self) -> dict:
        return {"fps": self.fps, "frame_count": self.frame_count, "width": self.width,
                "height": self.height, "sampler": self.sampler, "rotation": self.rotation,
                "frames_claimed": self.frames_claimed, "frames_decoded": self.frames_decoded}


def _largest_per_frame(dets: list[list[Detection]]) -> list[list[Detection]]:
    return [[max(d, key=lambda x: x.width * x.height)] if d else [] for d in dets]


def _ceil32(v: float) -> int:
    return int(math.ceil(v / 32.0)) * 32


class _TrackedDetector:
    """The largest face of each frame, frame by frame (see the module doc): the whole frame
    every ``cfg.detect_every`` frames, a window around the previous box between."""

    WINDOW = 4.0  # window side / face side (measured: 3 costs 0.013 in scores, 5 gains little)
    MIN_WINDOW = 256  # pixels: small faces get more context (measured: 0.008 -> 0.002)
    MIN_IOU = 0.3  # a window's face must overlap the previous box this much

    def __init__(self, detector: FaceDetector, cfg: ExtractConfig):
        self.detector, self.cfg = detector, cfg
        self.reset()

    def reset(self) -> None:
        self.dets: list[list[Detection]] = []
        self.last: Detection | None = None
        self.prev_hist = None
        self.counts = {"full": 0, "window": 0, "redetect": 0}

    def _run(self, img: np.ndarray, min_face: float) -> list[Detection]:
        return self.detector.detect([img], detect_side=None, min_face=min_face,
                                    min_confidence=self.cfg.min_confidence)[0]

    def _cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new shot (hue-saturation histogram distance to the
        previous frame, as :func:`~data_prep.faces.tracks.scene_cuts`, on a strided thumbnail)."""
        step = max(1, min(frame.shape[:2]) // 90)
        thumb = np.ascontiguousarray(frame[::step, ::step])
        h = cv2.calcHist([cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 8],
                         [0, 180, 0, 256])
        h = cv2.normalize(h, h).flatten()
        prev, self.prev_hist = self.prev_hist, h
        return prev is not None and cv2.compareHist(
            prev, h, cv2.HISTCMP_BHATTACHARYYA) > SCENE_CUT_DISTANCE

    @staticmethod
    def _region(frame: np.ndarray, s: float, ox: int, oy: int, wx: int, wy: int) -> np.ndarray:
        """Pixels ``[oy:oy+wy, ox:ox+wx]`` of the frame downscaled by ``s``, made from that
        region alone (the same pixels when ``1/s`` is a whole number, as for 1080p -> 640)."""
        if s >= 1.0:
            return frame[oy:oy + wy, ox:ox + wx]
        h, w = frame.shape[:2]
        x0, y0 = round(ox / s), round(oy / s)
        x1, y1 = min(w, round((ox + wx) / s)), min(h, round((oy + wy) / s))
        return cv2.resize(frame[y0:y1, x0:x1], (wx, wy), interpolation=cv2.INTER_AREA)

    def _window(self, frame: np.ndarray, s: float, min_face: float) -> Detection | None:
        """The largest face in a window around the previous box (frame pixels), or None when
        the track is lost there or a window would not be smaller than the frame."""
        h, w = frame.shape[:2]
        hs, ws = (max(1, round(h * s)), max(1, round(w * s))) if s < 1.0 else (h, w)
        x0, y0, x1, y1 = (v * s for v in self.last.box)
        side = max(x1 - x0, y1 - y0)
        win = _ceil32(max(self.WINDOW * side, self.MIN_WINDOW))
        wx, wy = min(win, ws), min(win, hs)
        if wx * wy > 0.6 * ws * hs:
            return None
        ox = min(max(0, int(((x0 + x1) / 2 - wx / 2) // 32) * 32), ws - wx)
        oy = min(max(0, int(((y0 + y1) / 2 - wy / 2) // 32) * 32), hs - wy)
        found = self._run(self._region(frame, s, ox, oy, wx, wy), min_face)
        if not found:
            return None
        d = max(found, key=lambda x: x.width * x.height)
        bx0, by0, bx1, by1 = d.box
        edge = 2.0
        if ((bx0 < edge and ox > 0) or (by0 < edge and oy > 0)
                or (bx1 > wx - edge and ox + wx < ws) or (by1 > wy - edge and oy + wy < hs)):
            return None  # cut by the window's edge (not the frame's): the face moved
        d = Detection((bx0 + ox, by0 + oy, bx1 + ox, by1 + oy), d.confidence,
                      {k: (x + ox, y + oy) for k, (x, y) in d.keypoints.items()}).scaled(1 / s)
        if box_iou(d.box, self.last.box) < self.MIN_IOU:
            return None
        return d

    def add(self, frame: np.ndarray, scale: float = 1.0) -> None:
        """Detect in the next frame (``scale``: frame pixels per source pixel). Only a
        whole-frame pass downscales the whole frame; a window downscales its region."""
        s = detection_scale(frame.shape, self.cfg.detect_side)
        min_face = self.cfg.min_face * scale * s
        cut = self._cut(frame)
        pos = len(self.dets)
        found = None
        if self.last is not None and not cut and pos % self.cfg.detect_every:
            found = self._window(frame, s, min_face)
            self.counts["window" if found is not None else "redetect"] += 1
        if found is None:
            self.counts["full"] += 1
            small, s = downscale(frame, self.cfg.detect_side)
            dets = self._run(small, min_face)
            found = max(dets, key=lambda x: x.width * x.height).scaled(1 / s) if dets else None
        self.last = found
        self.dets.append([found] if found is not None else [])


_END = object()


def _threaded(events, depth: int = 8):
    """Run the generator ``events`` in a thread (PyAV and the scaler release the GIL), up to
    ``depth`` items ahead; its errors are raised where the returned iterator is read, and
    its ``close()`` stops the thread. The thread starts here, in the calling thread, so it
    (and the decoder's own threads) get the caller's priority, not the reader's."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for ev in events:
                if not put(ev):
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put(err)
        finally:
            events.close()
            put(_END)

    th = threading.Thread(target=run, name="dfd-decode", daemon=True)
    th.start()
    return _Drain(q, stop, th)


class _Drain:
    """The reading end of :func:`_threaded`: an iterator whose :meth:`close` always stops and
    joins the thread, also when nothing was read yet (a generator that never started would
    skip its ``finally``)."""

    def __init__(self, q: queue.Queue, stop: threading.Event, th: threading.Thread):
        self._q, self._stop, self._th = q, stop, th
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._q.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        self._th.join()

    def __del__(self):
        if not self._done:
            self._stop.set()  # no join here: the collector may run in any thread


def _detect_all(frames, detector: FaceDetector, cfg: ExtractConfig, scale: float):
    return detector.detect(frames, detect_side=cfg.detect_side, min_face=cfg.min_face * scale,
                           min_confidence=cfg.min_confidence)


def _faces(frames: list[np.ndarray], indices: list[int], dets: list[list[Detection]], info: dict,
           cfg: ExtractConfig, path, timings: dict, aligned: dict | None = None) -> VideoFaces:
    """Tracks and aligned crops from the per-frame detections (frame pixels); ``aligned``:
    ``{position: (detection, crop)}`` already made (``extract_faces(on_face=)``), used where
    the track keeps that very detection."""
    n = len(frames)
    if not any(dets):
        raise NoFaceError(path, n)
    t = time.perf_counter()
    if cfg.all_faces:
        tracks = build_tracks(dets, cuts=scene_cuts(frames))
        min_len = max(2, math.ceil(cfg.min_track_fraction * n)) if n > 2 else 1
        kept = [tr for tr in tracks if len(tr) >= min_len]
        if not kept:  # faces only on a few frames: still return the biggest one
            kept = tracks[:1]
        tracks = kept
    else:
        tracks = build_tracks(_largest_per_frame(dets), iou_threshold=0.0, centre_dist=1e9,
                              max_gap=n)
        tracks = tracks[:1]
    to_source = 1.0 / info.get("scale", 1.0)
    out = []
    for ti, tr in enumerate(tracks):
        done = aligned or {}
        faces = [done[p][1] if p in done and done[p][0] is d else
                 align_face(frames[p], d, size=cfg.face_size, margin=cfg.margin,
                            centre=cfg.centre)
                 for p, d in zip(tr.positions, tr.detections)]
        src = [d.scaled(to_source) if to_source != 1.0 else d for d in tr.detections]
        out.append(TrackFaces(
            track=ti, faces=faces,
            frame_indices=[int(indices[p]) for p in tr.positions],
            boxes=[tuple(float(v) for v in d.box) for d in src],
            confidences=[float(d.confidence) for d in src],
            keypoints=[dict(d.keypoints) for d in src]))
        in_crop = [crop_coordinates(d, cfg.margin, cfg.centre) for d in src]
        out[-1].landmarks = [lm for lm, _ in in_crop]
        out[-1].crop_boxes = [box for _, box in in_crop]
    timings["align"] = time.perf_counter() - t
    claimed, decoded = int(info.get("frames_claimed", 0)), int(info.get("frames_decoded", 0))
    partial = claimed > 0 and decoded < cfg.min_decoded_fraction * claimed
    if partial:
        log.warning("%s: only %d of %d claimed frames decoded", path, decoded, claimed)
    return VideoFaces(path=str(path), fps=info["fps"], frame_count=info["frame_count"],
                      width=info["width"], height=info["height"], sampler=info["sampler"],
                      frames_searched=n, tracks=out, timings=timings,
                      rotation=int(info.get("rotation", 0)), frames_claimed=claimed,
                      frames_decoded=decoded, partial=partial)


def extract_faces(path, detector: FaceDetector | str | None = None,
                  cfg: ExtractConfig | None = None, on_face=None) -> VideoFaces:
    """Faces of the video at ``path``: ``cfg.n_frames`` frames over the whole video, detected
    with ``detector`` (an instance, or a registry name; None = the default detector), aligned
    to ``cfg.face_size`` squares. Raises :class:`~data_prep.sampling.VideoReadError` and
    :class:`NoFaceError`.

    ``on_face(frame_index, face)``: with tracked detection of one face per frame (the default:
    ``detect_every > 1``, not ``all_faces``) each frame's face is final once its frame is
    searched, so it is aligned and handed over then, while later frames are still decoded (a
    caller can score faces meanwhile); the returned track holds the same crops. Never called
    otherwise, and not for frames that a restarted sampler (``reset``) dropped: a face is
    handed over again if its frame comes again."""
    cfg = cfg or ExtractConfig()
    if detector is None or isinstance(detector, str):
        detector = get_detector(detector or "default")
    timings: dict = {}
    t = time.perf_counter()
    events = iter_frames(path, n_frames=cfg.n_frames, mode=cfg.sampler, stride=cfg.stride,
                         max_pixels=cfg.max_pixels, rotate=cfg.rotate,
                         max_decoded_pixels=cfg.max_decoded_pixels, threads=cfg.decode_threads)
    tracker = _TrackedDetector(detector, cfg) if cfg.detect_every > 1 and not cfg.all_faces \
        else None
    if cfg.overlap and cfg.face_nice > 0:
        _start_cv2_pool()  # before any lowered thread could start OpenCV's (shared) workers
    if cfg.overlap:
        events = _threaded(events)  # the decoder's thread, at this thread's priority
    try:
        if cfg.overlap and cfg.face_nice > 0:
            # the faces are found in a thread that yields to the decoder (see dfd.priority);
            # an interrupt of the caller stops the search at its next frame
            stop = threading.Event()
            seen = run_lowered(lambda: _search(events, tracker, cfg, on_face, stop),
                               cfg.face_nice, name="dfd-faces", on_interrupt=stop.set)
        else:
            seen = _search(events, tracker, cfg, on_face)
    finally:
        events.close()  # also when the search never started (its thread could not start)
    frames, indices, info, detect_s, early_align_s, aligned = seen
    timings["decode"] = time.perf_counter() - t - detect_s - early_align_s  # waiting for frames
    td = time.perf_counter()
    if tracker is None:
        dets = _detect_all(frames, detector, cfg, info.get("scale", 1.0))
    else:
        dets = tracker.dets
    timings["detect"] = detect_s + time.perf_counter() - td
    vf = _faces(frames, indices, dets, info, cfg, path, timings, aligned)
    timings["align"] = timings.get("align", 0.0) + early_align_s
    vf.detect_calls = dict(tracker.counts) if tracker is not None else {"full": len(frames)}
    log.debug("%s: %d tracks, %s", path, len(vf.tracks), timings)
    return vf


_CV2_POOL = threading.Lock()
_cv2_pool_started = False


def _start_cv2_pool() -> None:
    """Make OpenCV start its worker threads now, from this (the caller's) thread, once per
    process. They are created on the first parallel call and shared by every later one, and
    a thread inherits its creator's nice value: started from a lowered search thread, they
    would run every later OpenCV call of the process at that lower priority."""
    global _cv2_pool_started
    with _CV2_POOL:
        if _cv2_pool_started:
            return
        cv2.resize(np.zeros((1080, 1920, 3), np.uint8), (640, 360),
                   interpolation=cv2.INTER_AREA)
        _cv2_pool_started = True


def _search(events, tracker: _TrackedDetector | None, cfg: ExtractConfig, on_face,
            stop: threading.Event | None = None):
    """Read the sampler's ``events``, detecting (tracked) and handing faces over as frames
    come: ``(frames, indices, info, detect_s, early_align_s, aligned)``. ``stop`` set: stop
    at the next event (the caller was interrupted and raises)."""
    frames: list[np.ndarray] = []
    indices: list[int] = []
    info: dict = {}
    detect_s = early_align_s = 0.0
    aligned: dict[int, tuple[Detection, np.ndarray]] = {}  # position -> (detection, crop)
    for ev in events:  # the caller closes ``events`` (stopping the decoder's thread)
        if stop is not None and stop.is_set():
            break
        if ev.kind == "frame":
            frames.append(ev.frame)
            indices.append(ev.index)
            if tracker is not None:
                td = time.perf_counter()
                tracker.add(ev.frame, ev.scale)
                detect_s += time.perf_counter() - td
                if on_face is not None and tracker.dets[-1]:
                    ta = time.perf_counter()
                    face = align_face(ev.frame, tracker.dets[-1][0], size=cfg.face_size,
                                      margin=cfg.margin, centre=cfg.centre)
                    early_align_s += time.perf_counter() - ta
                    aligned[len(frames) - 1] = (tracker.dets[-1][0], face)
                    on_face(ev.index, face)
        elif ev.kind == "reset":
            frames, indices, aligned = [], [], {}
            if tracker is not None:
                tracker.reset()
        else:
            info = ev.info
    return frames, indices, info, detect_s, early_align_s, aligned


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
