"""The face-shard schema: the one definition of what a shard holds.

A shard is a TFRecord file of ``tf.train.SequenceExample`` records, one record per video
*track* (a person followed across frames; a video prepared with the default "largest face"
policy has exactly one track, so one record per video). Face-crop image sets become one-frame
records of the same format, so every model reads crops and videos through one reader.

Context (one value per record):

========================  ======  ==================================================
key                       type    meaning
========================  ======  ==================================================
``video_id``              bytes   unique id of the source item (file name for DFDC)
``label``                 int64   1 FAKE, 0 REAL, -1 UNKNOWN (:mod:`dfd.labels`)
``group``                 bytes   identity group used for splitting (DFDC ``original``)
``source``                bytes   dataset / layout the item came from
``split``                 bytes   split name given by the manifest ("" when none)
``track``                 int64   person track id within the video (0 = largest face)
``fps``                   float   container frame rate (0 when unknown, e.g. crops)
``frame_count``           int64   frames that exist in the video (decoded, not claimed)
``sampler``               bytes   how frames were picked, e.g. ``"uniform:32"``
``width`` / ``height``    int64   source frame size in pixels
``original``              bytes   OPTIONAL: the real video this record was made from
                                  (a REAL: its own video; a FAKE: its source, e.g.
                                  DFDC ``original``, FF++ target); "" when unknown.
                                  Written only when known; shards without it read as ""
========================  ======  ==================================================

A record is one video (track): for crop sets with several frames per video (FF++ crops),
``dfd prep`` writes the crops of one video as one multi-frame record, so a video is counted
once in every metric.

Per-frame feature lists (one entry per face, in frame order):

========================  ======  ==================================================
``face``                  bytes   encoded face image, lossless PNG (or the source JPEG
                                  bytes unchanged, for crop sets); RGB, square
``frame_index``           int64   index of the frame in the video
``box``                   float   [x0, y0, x1, y1] face box in source-frame pixels
``confidence``            float   detector confidence of the face
``landmarks``             float   OPTIONAL. 10 values: the detector's five keypoints
                                  (left eye, right eye, nose, mouth left, mouth right)
                                  as x0, y0, x1, y1, ... in face-crop coordinates
                                  scaled to [0, 1] (x / crop width, y / crop height;
                                  a point near the border may fall slightly outside);
                                  all ``-1`` when no face was found on the crop
``crop_box``              float   OPTIONAL. [x0, y0, x1, y1] the detector's face box
                                  in the same [0, 1] face-crop coordinates (the axis
                                  bounds of the box as the aligned crop shows it);
                                  all ``-1`` when absent
========================  ======  ==================================================

``landmarks`` and ``crop_box`` are computed once by ``dfd prep`` (see
:mod:`data_prep.landmarks`): for faces cut from videos they are the keypoints and box of
the detection the crop was aligned on, mapped through the same alignment; for crop sets
the detector is run once on each crop. Shards written before they existed hold neither
list and still read: :func:`parse_record` then fills both with ``-1`` (absent), as it does
for a record written without them. :func:`has_landmarks` tells which rows are present.

Every shard file ``NAME.tfrecord`` is listed in the directory's ``index.json`` with its
record count and byte size, so readers catch a truncated shard before training on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FACE_SIZE = 256
SHARD_SUFFIX = ".tfrecord"
INDEX_FILE = "index.json"

# context keys
VIDEO_ID = "video_id"
LABEL = "label"
GROUP = "group"
SOURCE = "source"
SPLIT = "split"
TRACK = "track"
FPS = "fps"
FRAME_COUNT = "frame_count"
SAMPLER = "sampler"
WIDTH = "width"
HEIGHT = "height"
ORIGINAL = "original"  # optional (absent from shards written before it existed)

# sequence keys
FACE = "face"
FRAME_INDEX = "frame_index"
BOX = "box"
CONFIDENCE = "confidence"
LANDMARKS = "landmarks"  # optional: [5, 2] keypoints in [0, 1] face-crop coordinates
CROP_BOX = "crop_box"  # optional: [4] face box in [0, 1] face-crop coordinates
N_LANDMARKS = 5
ABSENT = -1.0  # the value of every coordinate of a missing landmarks / crop_box row

_CTX_BYTES = (VIDEO_ID, GROUP, SOURCE, SPLIT, SAMPLER, ORIGINAL)
_CTX_INT = (LABEL, TRACK, FRAME_COUNT, WIDTH, HEIGHT)
_CTX_FLOAT = (FPS,)


@dataclass
class FaceRecord:
    """One record of a shard: a track of faces from one video (or one crop)."""

    video_id: str
    label: int
    faces: Sequence[bytes]  # encoded images (PNG, or source JPEG bytes)
    frame_indices: Sequence[int]
    boxes: Sequence[Sequence[float]] = ()
    confidences: Sequence[float] = ()
    group: str = ""
    source: str = ""
    split: str = ""
    track: int = 0
    fps: float = 0.0
    frame_count: int = 0
    sampler: str = ""
    width: int = 0
    height: int = 0
    original: str = ""  # the real video it was made from ("" = unknown; not written then)
    # optional, per face: 5 (x, y) keypoints / an (x0, y0, x1, y1) box in [0, 1] crop
    # coordinates, or None where none was found; empty = not recorded (not written)
    landmarks: Sequence = ()
    crop_boxes: Sequence = ()
    extra: dict = field(default_factory=dict)  # not serialised; for callers' bookkeeping

    def __post_init__(self):
        n = len(self.faces)
        if n == 0:
            raise ValueError(f"record {self.video_id!r} has no faces; record a failure instead")
        if len(self.frame_indices) != n:
            raise ValueError(
                f"record {self.video_id!r}: {n} faces but {len(self.frame_indices)} frame indices"
            )
        if not self.boxes:
            self.boxes = [(0.0, 0.0, 0.0, 0.0)] * n
        if not self.confidences:
            self.confidences = [1.0] * n
        if len(self.boxes) != n or len(self.confidences) != n:
            raise ValueError(
                f"record {self.video_id!r}: {n} faces, {len(self.boxes)} boxes, "
                f"{len(self.confidences)} confidences"
            )
        if self.landmarks or self.crop_boxes:
            self.landmarks = _optional_rows(self, "landmarks", self.landmarks, 2 * N_LANDMARKS)
            self.crop_boxes = _optional_rows(self, "crop_boxes", self.crop_boxes, 4)


def _optional_rows(rec: FaceRecord, name: str, rows, width: int) -> list[list[float]]:
    """``rows`` (one per face; None = absent) as flat float lists of ``width`` values."""
    n = len(rec.faces)
    if not rows:
        return [[ABSENT] * width for _ in range(n)]
    if len(rows) != n:
        raise ValueError(f"record {rec.video_id!r}: {n} faces but {len(rows)} {name}")
    out = []
    for i, row in enumerate(rows):
        if row is None:
            out.append([ABSENT] * width)
            continue
        flat = np.asarray(row, dtype=np.float64).ravel()
        if flat.size != width or not np.all(np.isfinite(flat)):
            raise ValueError(f"record {rec.video_id!r}: {name}[{i}] must be {width} finite "
                             f"numbers or None, got {row!r}")
        out.append([float(v) for v in flat])
    return out


def has_landmarks(landmarks) -> np.ndarray:
    """Which rows of ``landmarks`` (``[..., 5, 2]`` or ``[..., 10]``) are present (not absent)."""
    a = np.asarray(landmarks, dtype=np.float32)
    a = a.reshape(a.shape[:-2] + (-1,)) if a.ndim >= 2 and a.shape[-2:] == (N_LANDMARKS, 2) else a
    return ~np.all(a == ABSENT, axis=-1)


def encode_record(rec: FaceRecord) -> bytes:
    """Serialise a :class:`FaceRecord` to ``SequenceExample`` bytes."""
    import tensorflow as tf

    feat = tf.train.Feature

    def b(v: str | bytes):
        return feat(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))

    def i(v):
        return feat(int64_list=tf.train.Int64List(value=[int(v)]))

    def f(v):
        return feat(float_list=tf.train.FloatList(value=[float(v)]))

    ctx = {
        VIDEO_ID: b(rec.video_id),
        LABEL: i(rec.label),
        GROUP: b(rec.group),
        SOURCE: b(rec.source),
        SPLIT: b(rec.split),
        TRACK: i(rec.track),
        FPS: f(rec.fps),
        FRAME_COUNT: i(rec.frame_count),
        SAMPLER: b(rec.sampler),
        WIDTH: i(rec.width),
        HEIGHT: i(rec.height),
    }
    if rec.original:
        ctx[ORIGINAL] = b(rec.original)
    lists = {
        FACE: [feat(bytes_list=tf.train.BytesList(value=[x])) for x in rec.faces],
        FRAME_INDEX: [i(x) for x in rec.frame_indices],
        BOX: [
            feat(float_list=tf.train.FloatList(value=[float(c) for c in box]))
            for box in rec.boxes
        ],
        CONFIDENCE: [f(x) for x in rec.confidences],
    }
    if rec.landmarks or rec.crop_boxes:
        lists[LANDMARKS] = [feat(float_list=tf.train.FloatList(value=row))
                            for row in rec.landmarks]
        lists[CROP_BOX] = [feat(float_list=tf.train.FloatList(value=row))
                           for row in rec.crop_boxes]
    ex = tf.train.SequenceExample(
        context=tf.train.Features(feature=ctx),
        feature_lists=tf.train.FeatureLists(
            feature_list={k: tf.train.FeatureList(feature=v) for k, v in lists.items()}
        ),
    )
    return ex.SerializeToString(deterministic=True)  # the same bytes in every process


def parse_specs():
    """``(context_spec, sequence_spec)`` for ``tf.io.parse_single_sequence_example``."""
    import tensorflow as tf

    ctx = {k: tf.io.FixedLenFeature([], tf.string, default_value="") for k in _CTX_BYTES}
    ctx.update({k: tf.io.FixedLenFeature([], tf.int64, default_value=0) for k in _CTX_INT})
    ctx.update({k: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for k in _CTX_FLOAT})
    seq = {
        FACE: tf.io.FixedLenSequenceFeature([], tf.string),
        FRAME_INDEX: tf.io.FixedLenSequenceFeature([], tf.int64),
        BOX: tf.io.FixedLenSequenceFeature([4], tf.float32),
        CONFIDENCE: tf.io.FixedLenSequenceFeature([], tf.float32),
        # optional: missing in older shards (an empty list, filled in by parse_record)
        LANDMARKS: tf.io.FixedLenSequenceFeature([2 * N_LANDMARKS], tf.float32,
                                                 allow_missing=True),
        CROP_BOX: tf.io.FixedLenSequenceFeature([4], tf.float32, allow_missing=True),
    }
    return ctx, seq


def parse_record(serialized):
    """Parse one serialised record (graph-friendly) into one flat dict of tensors.

    ``landmarks`` comes out as ``float32[n, 5, 2]`` and ``crop_box`` as ``float32[n, 4]``
    for every record, filled with :data:`ABSENT` when the record holds none.
    """
    import tensorflow as tf

    ctx_spec, seq_spec = parse_specs()
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=ctx_spec, sequence_features=seq_spec
    )
    n = tf.shape(seq[FACE])[0]
    for key, width in ((LANDMARKS, 2 * N_LANDMARKS), (CROP_BOX, 4)):
        rows = seq[key]
        seq[key] = tf.cond(tf.equal(tf.shape(rows)[0], n), lambda rows=rows: rows,
                           lambda width=width: tf.fill([n, width], tf.constant(ABSENT, tf.float32)))
    seq[LANDMARKS] = tf.reshape(seq[LANDMARKS], [n, N_LANDMARKS, 2])
    return {**ctx, **seq}


def decode_record(serialized: bytes) -> dict:
    """Eager, numpy-valued parse of one record (for tools and tests)."""
    out = {}
    for k, v in parse_record(serialized).items():
        v = v.numpy()
        if isinstance(v, bytes) and k != FACE:
            v = v.decode()
        out[k] = v
    return out


def png_params() -> list[int]:
    """OpenCV's PNG settings for faces: zlib level 1, run-length matching and one row filter
    ("up") for every row. Measured on 128 faces of DFDC clips at 256 px (docs/benchmarks.md):
    1.6 ms to encode against 3.0 ms for level 1 with libpng's adaptive filters, 0.9 ms to
    decode against 1.2, and 8% fewer bytes. Lossless either way. An OpenCV build without
    ``IMWRITE_PNG_FILTER`` keeps the run-length matching alone (2.9 ms, 19% fewer bytes)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
              cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    return params


def encode_png(face_rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 face (:func:`png_params`)."""
    if face_rgb.dtype != np.uint8 or face_rgb.ndim != 3 or face_rgb.shape[2] != 3:
        raise ValueError(
            f"face must be an HxWx3 uint8 RGB array, got {face_rgb.dtype} {face_rgb.shape}"
        )
    ok, buf = cv2.imencode(".png", cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR), png_params())
    if not ok:
        raise ValueError("PNG encoding of a face failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8 array of encoded face bytes (PNG or JPEG)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"face bytes ({len(data)} bytes) are not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------- shard index


@dataclass
class ShardInfo:
    file: str  # name relative to the index's directory
    records: int
    faces: int
    bytes: int


def read_index(shard_dir: str | Path) -> dict:
    """The ``index.json`` of a shard directory (raises naming the path when absent/broken)."""
    path = Path(shard_dir) / INDEX_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no {INDEX_FILE} in {shard_dir}: not a shard directory, or `dfd prep` did not finish"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"shard index {path} is not valid JSON: {err}") from None
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"shard index {path} has schema_version {doc.get('schema_version')!r}, "
            f"this package reads {SCHEMA_VERSION}"
        )
    return doc


def write_index(shard_dir: str | Path, shards: Iterable[ShardInfo], **stats) -> Path:
    """Write ``index.json`` atomically, listing the shards and run statistics."""
    shard_dir = Path(shard_dir)
    shards = sorted(shards, key=lambda s: s.file)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "face_size": FACE_SIZE,
        "shards": [s.__dict__ for s in shards],
        "records": sum(s.records for s in shards),
        "faces": sum(s.faces for s in shards),
        **stats,
    }
    path = shard_dir / INDEX_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def bare_source(source: str) -> str:
    """A record's ``source`` without its layout prefix: ``csv:dfdc_faces`` -> ``dfdc_faces``."""
    return str(source).split(":", 1)[-1]


def match_sources(key: str, available) -> list[str]:
    """The sources of ``available`` (full names, ``csv:dfdc_faces``) that ``key`` names: the
    one equal to it, else those whose name after the layout prefix equals it
    (``dfdc_faces``), else those whose name starts with it (``dfdc``). The one rule by which
    ``--mix``, ``--trained-on`` and ``dfd predict --source`` read a source's name."""
    available = sorted({str(s) for s in available})
    return ([s for s in available if key == s]
            or [s for s in available if key == bare_source(s)]
            or [s for s in available if bare_source(s).startswith(key) or s.startswith(key)])


def resolve_shards(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files of a directory (via its index, size-checked), a file, or a list of either.

    A shard listed in the index whose size on disk differs from the recorded size raises
    ``ValueError`` naming the file: it was truncated or overwritten after it was written.
    """
    if isinstance(source, (str, Path)):
        source = [source]
    files: list[Path] = []
    for item in source:
        p = Path(item)
        if p.is_dir():
            index = read_index(p)
            for s in index["shards"]:
                f = p / s["file"]
                if not f.exists():
                    raise FileNotFoundError(f"shard {f} is listed in {p / INDEX_FILE} but missing")
                size = f.stat().st_size
                if size != s["bytes"]:
                    raise ValueError(
                        f"shard {f} is {size} bytes but its index records {s['bytes']}: "
                        "truncated or modified; re-run `dfd prep` to rebuild it"
                    )
                files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no shard file or shard directory at {p}")
    if not files:
        raise ValueError(f"no shards found in {[str(s) for s in source]}")
    return files
