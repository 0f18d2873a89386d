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
========================  ======  ==================================================

Every shard file ``NAME.tfrecord`` is listed in the directory's ``index.json`` with its
record count and byte size, so readers catch a truncated shard before training on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    }
    return ctx, seq


def parse_record(serialized):
    """Parse one serialised record (graph-friendly) into one flat dict of tensors."""
    import tensorflow as tf

    ctx_spec, seq_spec = parse_specs()
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=ctx_spec, sequence_features=seq_spec
    )
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


def encode_png(face_rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 face."""
    import cv2

    if face_rgb.dtype != np.uint8 or face_rgb.ndim != 3 or face_rgb.shape[2] != 3:
        raise ValueError(
            f"face must be an HxWx3 uint8 RGB array, got {face_rgb.dtype} {face_rgb.shape}"
        )
    ok, buf = cv2.imencode(".png", cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding of a face failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8 array of encoded face bytes (PNG or JPEG)."""
    import cv2

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
