"""``tf.data`` readers of face shards: a frame dataset and a clip dataset.

Both read the schema of :mod:`dfd.schema` and nothing else. Elements are dicts, so callers
pick what they need; :func:`as_xy` turns them into ``(inputs, label)`` pairs for ``fit``.

* :func:`frame_dataset` yields one face per element:
  ``{"face": uint8[S,S,3], "label", "video_id", "track", "frame_index", "group",
  "landmarks": float32[5,2], "crop_box": float32[4]}`` (the last two in [0, 1] crop
  coordinates, ``-1`` where absent: see :mod:`dfd.schema`).
* :func:`clip_dataset` yields ``T`` faces of one record per element:
  ``{"faces": uint8[T,S,S,3], "mask": bool[T], "frame_indices": int64[T], ...}``; records
  with fewer than ``T`` faces are padded with zeros and ``mask=False``.

Unknown-label records (label -1) are dropped unless ``keep_unknown=True``.

A damaged shard file (a record cut short or failing its checksum) makes TensorFlow raise
``DataLossError`` naming no file; :func:`damaged_shards_named` turns it into a
:class:`DamagedShardError` naming the file(s) (found by :func:`check_shards`), which is what
``dfd predict`` reports, in one line, before it exits with status 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from dfd import schema

AUTOTUNE = -1  # tf.data.AUTOTUNE
#: faces per clip of a clip (temporal) model when neither the caller nor the model says
CLIP_LEN = 16


class DamagedShardError(ValueError):
    """A shard file holds a record that cannot be read: cut short, or failing its checksum."""


def _tf_reason(err) -> str:
    """TensorFlow's error text without its op boilerplate (one line)."""
    text = str(getattr(err, "message", None) or err)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text, flags=re.S)
    text = re.sub(r"'? failed with Read less bytes than requested", " (the file ends inside it)",
                  text)
    return " ".join(text.split())


def check_shards(source) -> list[tuple[Path, str]]:
    """Every shard file of ``source`` that cannot be read whole, with the reason and where.

    Reads each record and checks its checksum, decoding nothing; an empty list means every
    shard is sound. Costs one read of the shards.
    """
    import tensorflow as tf

    bad = []
    for f in schema.resolve_shards(source):
        n = 0
        try:
            for _ in tf.data.TFRecordDataset(str(f)):
                n += 1
        except tf.errors.DataLossError as err:
            bad.append((f, f"{_tf_reason(err)}, after {n} whole record(s)"))
    return bad


@contextmanager
def damaged_shards_named(source):
    """Run a block reading ``source``; TensorFlow's ``DataLossError`` (which names no file)
    becomes :class:`DamagedShardError` naming the damaged shard file(s)."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.DataLossError as err:
        bad = check_shards(source)
        if not bad:
            raise DamagedShardError(f"damaged shard data in {source}: {_tf_reason(err)}") from None
        where = "; ".join(f"{f} ({why})" for f, why in bad)
        raise DamagedShardError(
            f"damaged shard file{'s' if len(bad) > 1 else ''} {where}: rebuild "
            f"{'them' if len(bad) > 1 else 'it'} with `dfd prep` into a fresh folder, or leave "
            f"{'them' if len(bad) > 1 else 'it'} out of the shards given") from None


def records(source, shuffle: bool = False, seed: int | None = None, keep_unknown: bool = False,
            split: str | None = None, keep=None):
    """Parsed records (dicts of :func:`dfd.schema.parse_record`) of shards, filtered.

    ``keep(record) -> bool tensor`` is an extra record filter (e.g. one source, one label),
    applied before any face is decoded.
    """
    ds = _records(source, shuffle, seed).filter(lambda r: _keep(r, keep_unknown, split))
    return ds if keep is None else ds.filter(keep)


def _records(source, shuffle_files: bool, seed: int | None):
    import tensorflow as tf

    files = [str(f) for f in schema.resolve_shards(source)]
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files and len(files) > 1:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f),
        cycle_length=min(4, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=not shuffle_files,
    )
    return ds.map(schema.parse_record, num_parallel_calls=AUTOTUNE)


def _resize_uint8(img, face_size: int):
    """Bilinear resize to ``face_size``, antialiased only when shrinking (upscaling gains
    nothing from it and it halves the input pipeline's speed); ``img`` is one image
    ``[H, W, 3]`` or a batch ``[N, H, W, 3]`` of one size."""
    import tensorflow as tf

    size = [face_size, face_size]
    shrink = tf.reduce_max(tf.shape(img)[-3:-1]) > face_size
    out = tf.cond(shrink, lambda: tf.image.resize(img, size, antialias=True),
                  lambda: tf.image.resize(img, size))
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def resize_faces(faces, face_size: int):
    """uint8 faces ``[..., H, W, 3]`` (one size) -> ``[..., face_size, face_size, 3]`` by the
    method of :func:`decode_face` (unchanged when already that size). The exported
    SavedModel runs this in its graph (:mod:`dfd.export`), so a face of any size scores
    there as it does in ``dfd detect --crops`` and from shards."""
    import tensorflow as tf

    faces = tf.convert_to_tensor(faces)
    shape = tf.shape(faces)
    lead = shape[:-3]
    flat = tf.reshape(faces, tf.concat([[-1], shape[-3:]], 0))
    same = tf.logical_and(tf.equal(shape[-3], face_size), tf.equal(shape[-2], face_size))
    out = tf.cond(same, lambda: flat, lambda: _resize_uint8(flat, face_size))
    out = tf.reshape(out, tf.concat([lead, [face_size, face_size, 3]], 0))
    static = faces.shape[:-3].as_list() if faces.shape.rank is not None else None
    return tf.ensure_shape(out, static + [face_size, face_size, 3]) if static is not None else out


def decode_face(data, face_size: int = schema.FACE_SIZE):
    """Decode encoded face bytes to ``uint8[face_size, face_size, 3]`` (resizing if needed)."""
    import tensorflow as tf

    img = tf.io.decode_image(data, channels=3, expand_animations=False)
    shape = tf.shape(img)
    img = tf.cond(
        tf.logical_and(tf.equal(shape[0], face_size), tf.equal(shape[1], face_size)),
        lambda: img,
        lambda: _resize_uint8(img, face_size),
    )
    return tf.ensure_shape(img, [face_size, face_size, 3])


def _keep(rec, keep_unknown: bool, split: str | None = None):
    import tensorflow as tf

    ok = tf.constant(True) if keep_unknown else rec[schema.LABEL] >= 0
    if split:
        ok = tf.logical_and(ok, tf.equal(rec[schema.SPLIT], split))
    return ok


def from_source(names: str | Sequence[str] | None):
    """A ``keep`` filter (see :func:`records`) for the records whose ``source`` is one of
    ``names`` as stored (``csv:ffpp_faces``; :func:`resolve_source` finds them from a short
    name), or None when ``names`` is None."""
    if names is None:
        return None
    import tensorflow as tf

    wanted = tf.constant([names] if isinstance(names, str) else list(names), tf.string)
    return lambda rec: tf.reduce_any(tf.equal(rec[schema.SOURCE], wanted))


def resolve_source(source, key: str) -> list[str]:
    """The shards' source names that ``key`` names (:func:`dfd.schema.match_sources`:
    ``csv:ffpp_faces``, ``ffpp_faces`` or ``ffpp``); a ValueError naming what the shards
    hold when it names none."""
    held = source_names(source)
    hits = schema.match_sources(key, held)
    if not hits:
        where = " ".join(map(str, source)) if isinstance(source, (list, tuple)) else source
        raise ValueError(f"no record of source {key!r} in {where}; the shards hold "
                         f"{', '.join(held) or 'no source names'}")
    return hits


def frame_dataset(
    source: str | Path | Sequence[str | Path],
    face_size: int = schema.FACE_SIZE,
    shuffle: bool = False,
    shuffle_buffer: int = 2048,
    seed: int | None = None,
    keep_unknown: bool = False,
    max_faces_per_record: int | None = None,
    split: str | None = None,
    keep=None,
):
    """One face per element, with its label and where it came from.

    ``split`` keeps only records whose manifest split (``dfd split``) has that name;
    ``keep`` is a further record filter (see :func:`records`).

    ``max_faces_per_record`` keeps at most that many faces of each record (evenly spaced),
    so long videos do not outweigh short ones in training.
    """
    import tensorflow as tf

    ds = records(source, shuffle, seed, keep_unknown, split, keep)

    def explode(rec):
        n = tf.shape(rec[schema.FACE])[0]
        idx = tf.range(n)
        if max_faces_per_record:
            k = tf.minimum(n, max_faces_per_record)
            idx = tf.cast(
                tf.math.floor(tf.range(k, dtype=tf.float32) * tf.cast(n, tf.float32)
                              / tf.cast(k, tf.float32)),
                tf.int32,
            )
        k = tf.shape(idx)[0]
        return tf.data.Dataset.from_tensor_slices({
            "face_bytes": tf.gather(rec[schema.FACE], idx),
            "frame_index": tf.gather(rec[schema.FRAME_INDEX], idx),
            "label": tf.fill([k], rec[schema.LABEL]),
            "video_id": tf.fill([k], rec[schema.VIDEO_ID]),
            "group": tf.fill([k], rec[schema.GROUP]),
            "track": tf.fill([k], rec[schema.TRACK]),
            "landmarks": tf.gather(rec[schema.LANDMARKS], idx),
            "crop_box": tf.gather(rec[schema.CROP_BOX], idx),
        })

    ds = ds.flat_map(explode)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def decode(el):
        el = dict(el)
        el["face"] = decode_face(el.pop("face_bytes"), face_size)
        return el

    return ds.map(decode, num_parallel_calls=AUTOTUNE)


def clip_positions(n, clip_len: int, mode: str = "uniform", seed=None):
    """Indices of ``clip_len`` faces out of ``n`` (graph function).

    ``uniform``: evenly spaced over the whole record. ``random``: a random stride (1 up to
    what fits) and a random start, so training sees different spans of the video.
    Returns ``(indices int32[clip_len], mask bool[clip_len])``; when ``n < clip_len`` the
    tail is padded (index 0, mask False).
    """
    import tensorflow as tf

    n = tf.cast(n, tf.int32)
    steps = tf.range(clip_len, dtype=tf.int32)
    if mode == "uniform":
        pos = tf.cast(
            tf.math.floor(tf.cast(steps, tf.float32) * tf.cast(n, tf.float32) / clip_len),
            tf.int32,
        )
    elif mode == "random":
        max_stride = tf.maximum(1, n // clip_len)
        stride = tf.random.uniform([], 1, max_stride + 1, dtype=tf.int32, seed=seed)
        span = stride * (clip_len - 1) + 1
        start = tf.random.uniform([], 0, tf.maximum(1, n - span + 1), dtype=tf.int32, seed=seed)
        pos = start + steps * stride
    else:
        raise ValueError(f"clip mode {mode!r} is not one of 'uniform', 'random'")
    short = n < clip_len
    pos = tf.where(short, steps, pos)
    mask = steps < n
    pos = tf.where(mask, tf.minimum(pos, n - 1), 0)
    return pos, mask


def n_clips(n: int, clip_len: int, max_clips: int) -> int:
    """Clips taken from a record of ``n`` faces: ``clamp(ceil(n / T), 1, max_clips)``."""
    return max(1, min(int(max_clips), -(-int(n) // int(clip_len))))


def clip_count(n, clip_len: int, max_clips: int):
    """:func:`n_clips` as a graph function (for tf.data)."""
    import tensorflow as tf

    n = tf.cast(n, tf.int32)
    k = (n + clip_len - 1) // clip_len
    return tf.clip_by_value(k, 1, max_clips)


def segment_clip(n, j, k, clip_len: int):
    """Indices and mask of clip ``j`` of ``k``: uniform over the ``j``-th of ``k`` segments."""
    import tensorflow as tf

    n, j, k = (tf.cast(v, tf.int64) for v in (n, j, k))
    start = tf.cast(j * n // k, tf.int32)
    end = tf.cast((j + 1) * n // k, tf.int32)
    pos, mask = clip_positions(end - start, clip_len, "uniform")
    return tf.where(mask, pos + start, 0), mask


def clip_dataset(
    source: str | Path | Sequence[str | Path],
    clip_len: int = CLIP_LEN,
    face_size: int = schema.FACE_SIZE,
    mode: str = "uniform",
    shuffle: bool = False,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    keep_unknown: bool = False,
    split: str | None = None,
    keep=None,
):
    """``clip_len`` faces of one record per element, padded with a mask when shorter.

    ``split`` keeps only records whose manifest split has that name.
    """
    import tensorflow as tf

    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    ds = records(source, shuffle, seed, keep_unknown, split, keep)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def to_clip(rec):
        pos, mask = clip_positions(tf.shape(rec[schema.FACE])[0], clip_len, mode, seed)
        return clip_from_record(rec, pos, mask, face_size)

    return ds.map(to_clip, num_parallel_calls=AUTOTUNE)


def clip_from_record(rec, pos, mask, face_size: int = schema.FACE_SIZE) -> dict:
    """The clip element of a parsed record: faces at ``pos``, zeroed where ``mask`` is False.

    Used by :func:`clip_dataset` and by readers that cut several clips from one record.
    """
    import tensorflow as tf

    faces = tf.map_fn(
        lambda b: decode_face(b, face_size),
        tf.gather(rec[schema.FACE], pos),
        fn_output_signature=tf.TensorSpec([face_size, face_size, 3], tf.uint8),
    )
    return {
        "faces": faces * tf.cast(mask, tf.uint8)[:, None, None, None],
        "mask": mask,
        "frame_indices": tf.where(mask, tf.gather(rec[schema.FRAME_INDEX], pos), -1),
        "label": rec[schema.LABEL],
        "video_id": rec[schema.VIDEO_ID],
        "group": rec[schema.GROUP],
        "track": rec[schema.TRACK],
    }


def as_xy(ds, input_key: str = "face", with_mask: bool = False):
    """``(inputs, label)`` pairs for ``model.fit``; labels as float32 P(fake) targets.

    With ``with_mask`` the inputs are ``{"faces": ..., "mask": ...}`` (the temporal model's
    two inputs).
    """
    import tensorflow as tf

    def pick(el):
        y = tf.cast(el["label"], tf.float32)
        if with_mask:
            return {"faces": el[input_key], "mask": el["mask"]}, y
        return el[input_key], y

    return ds.map(pick, num_parallel_calls=AUTOTUNE)


def _distinct(source, key: str) -> list[str]:
    """The distinct non-empty values of a text field of the shards' records, sorted (every
    record is read)."""
    ds = records(source, keep_unknown=True).map(lambda r: r[key])
    with damaged_shards_named(source):
        return sorted({v.decode() for v in ds.as_numpy_iterator()} - {""})


def source_names(source) -> list[str]:
    """The distinct non-empty ``source`` values of the shards' records, sorted."""
    return _distinct(source, schema.SOURCE)


def split_names(source) -> list[str]:
    """The distinct non-empty manifest ``split`` values of the shards' records, sorted."""
    return _distinct(source, schema.SPLIT)
