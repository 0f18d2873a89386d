"""Score face shards with a temporal model: clips over the whole video -> clip and video tables.

Each record (a video track of ``n`` faces) is cut into ``k = clamp(ceil(n / T), 1, max_clips)``
consecutive segments and each segment gives one clip of ``T`` faces sampled uniformly over it
(:func:`dfd.readers.segment_clip`: the one clip-cutting policy); so short videos give one clip over
the whole video (exactly the evaluation clip of :func:`dfd.readers.clip_dataset`) and long
ones several clips that together cover it. Segments shorter than ``T`` are padded and masked.

The clip table has the frame-table columns of :mod:`dfd.scores` (one row per clip;
``frame_index`` is the clip's first frame) plus ``clip``, ``last_frame`` and ``n_valid``. The
video table aggregates a video's clips with a :mod:`dfd.scores` rule (default ``mean``), with
``n_faces`` / ``n_frames`` counting the faces the clips used.

A clip holding a face that does not decode is skipped (with a warning); a video that lost some
clips is scored on the rest and its ``error`` column says how many, and a video that lost all
of them gets a ``status=error`` row: never a crash of the batch, never a silent gap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfd import progress, readers, schema, scores

log = logging.getLogger(__name__)

CLIP_COLUMNS = [*scores.FRAME_COLUMNS, "clip", "last_frame", "n_valid"]


def multi_clip_dataset(source: str | Path | Sequence[str | Path], clip_len: int = readers.CLIP_LEN,
                       max_clips: int = 4, face_size: int = schema.FACE_SIZE,
                       split: str | None = None, only_source: str | None = None):
    """Every record as ``k`` clips (unknown labels kept): ``clip_dataset``-style elements plus
    ``clip`` (its number within the record). ``split`` keeps only that manifest split,
    ``only_source`` only the source(s) named as stored (see :func:`dfd.readers.from_source`)."""
    import tensorflow as tf

    if clip_len < 1 or max_clips < 1:
        raise ValueError(f"clip_len and max_clips must be >= 1, got {clip_len}, {max_clips}")
    ds = readers.records(source, keep_unknown=True, split=split,
                         keep=readers.from_source(only_source))

    def clips_of(rec):
        n = tf.shape(rec[schema.FACE])[0]
        k = readers.clip_count(n, clip_len, max_clips)

        def one(j):
            pos, mask = readers.segment_clip(n, j, k, clip_len)
            return {**readers.clip_from_record(rec, pos, mask, face_size),
                    "clip": tf.cast(j, tf.int32)}

        return tf.data.Dataset.range(tf.cast(k, tf.int64)).map(one)

    return ds.flat_map(clips_of)


def _model_name(model, given: str | None) -> str:
    if given:
        return given
    name = str(getattr(model, "name", "temporal"))
    return name.replace("_", "-", 1) if name.startswith("temporal_") else name


def _stored_records(source) -> int | None:
    """Records held by the shards of ``source`` per their ``index.json`` (None: unknown)."""
    try:
        files = schema.resolve_shards(source)
        counts = {}
        for d in {f.parent for f in files}:
            counts.update({d / s["file"]: int(s["records"]) for s in schema.read_index(d)["shards"]})
        return sum(counts[f] for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def predict_shards(model, source, clip_len: int | None = None, max_clips: int = 4,
                   batch_size: int = 4, aggregation: str = "mean",
                   model_name: str | None = None, split: str | None = None,
                   face_size: int | None = None,
                   only_source: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every record of the shards; returns ``(clip_table, video_table)``.

    ``model`` is a Keras temporal model (inputs ``faces``/``mask``) or any callable taking
    that dict and returning ``[B,1]`` P(fake). ``clip_len`` defaults to the model's ``T``;
    ``face_size`` (side the faces are decoded at) to the model's fixed input side, else the
    shards' 256 px. A damaged shard file raises :class:`dfd.readers.DamagedShardError`
    naming it (see :func:`dfd.inference.frames.predict`).
    """
    with readers.damaged_shards_named(source):
        if isinstance(only_source, str):
            only_source = readers.resolve_source(source, only_source)
        return _predict_shards(model, source, clip_len, max_clips, batch_size, aggregation,
                               model_name, split, face_size, only_source)


def _predict_shards(model, source, clip_len, max_clips, batch_size, aggregation, model_name,
                    split, face_size, only_source=None):
    faces_shape = model.input["faces"].shape if hasattr(model, "input") else (None,) * 5
    if clip_len is None:
        clip_len = int(faces_shape[1]) if faces_shape[1] else readers.CLIP_LEN
    if face_size is None:
        face_size = int(faces_shape[2]) if faces_shape[2] else schema.FACE_SIZE
    if aggregation not in scores.AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose from {sorted(scores.AGGREGATIONS)}")
    name = _model_name(model, model_name)
    ds = multi_clip_dataset(source, clip_len, max_clips, face_size, split=split,
                            only_source=only_source)
    ds = ds.ignore_errors(log_warning=True).batch(batch_size).prefetch(2)
    rows, labels, used = [], {}, {}
    bar = progress.bar(None if split or only_source else _stored_records(source),
                       f"{name} records", "record")
    for batch in ds:
        x = {"faces": batch["faces"], "mask": batch["mask"]}
        out = model.predict_on_batch(x) if hasattr(model, "predict_on_batch") else model(x)
        p = np.asarray(out, dtype=np.float64).reshape(-1)
        if len(p) != len(batch["clip"]):
            raise ValueError(f"model returned {p.shape} scores for {len(batch['clip'])} clips")
        bar.update(int(np.sum(batch["clip"].numpy() == 0)))  # clip 0 starts a record
        for i in range(len(p)):
            vid = batch["video_id"][i].numpy().decode()
            frames = batch["frame_indices"][i].numpy()
            frames = frames[batch["mask"][i].numpy()]
            labels[vid] = int(batch["label"][i])
            used.setdefault(vid, set()).update((int(batch["track"][i]), int(f)) for f in frames)
            rows.append({
                "video_id": vid, "track": int(batch["track"][i]),
                "frame_index": int(frames[0]), "p_fake": float(p[i]), "model": name,
                "clip": int(batch["clip"][i]), "last_frame": int(frames[-1]),
                "n_valid": int(len(frames)),
            })
    bar.close()
    clips = pd.DataFrame(rows, columns=CLIP_COLUMNS)
    videos = scores.video_scores(clips, how=aggregation, labels=labels, model=name)
    videos["n_faces"] = videos["video_id"].map(lambda v: len(used[v])).astype(int)
    videos["n_frames"] = videos["video_id"].map(lambda v: len({f for _, f in used[v]})).astype(int)
    videos = _account_for_lost_clips(videos, clips, source, clip_len, max_clips, split, name,
                                     aggregation, only_source)
    log.info("%s: scored %d clips of %d videos", name, len(clips), len(videos))
    return clips, videos


def _account_for_lost_clips(videos, clips, source, clip_len, max_clips, split, name,
                            aggregation, only_source=None) -> pd.DataFrame:
    """Compare the clips scored with the clips every record should give (counted from the
    records without decoding a face): note partial losses, add rows for total ones."""
    ds = readers.records(source, keep_unknown=True, split=split,
                         keep=readers.from_source(only_source))
    expected: dict[str, list] = {}
    sources: dict[str, str] = {}
    for rec in ds.as_numpy_iterator():
        vid = rec[schema.VIDEO_ID].decode()
        k = readers.n_clips(len(rec[schema.FACE]), clip_len, max_clips)
        lab, n = expected.get(vid, (int(rec[schema.LABEL]), 0))
        expected[vid] = (lab, n + k)
        sources[vid] = rec[schema.SOURCE].decode()
    got = clips.groupby("video_id").size().to_dict() if len(clips) else {}
    videos = videos.copy()
    for i, row in videos.iterrows():
        want = expected.get(row["video_id"], (None, 0))[1]
        have = got.get(row["video_id"], 0)
        if have < want:
            videos.at[i, "error"] = (f"{want - have} of {want} clips could not be decoded; "
                                     "scored on the rest")
    lost = [scores.failure_row(vid, scores.STATUS_ERROR, "no clip of this record could be decoded",
                               label=lab, model=name, aggregation=aggregation)
            for vid, (lab, _) in expected.items() if vid not in got]
    if lost:
        log.warning("%d video(s) had no decodable clip: %s", len(lost),
                    [r["video_id"] for r in lost[:10]])
        videos = pd.concat([videos, pd.DataFrame(lost)], ignore_index=True)
    videos[scores.SOURCE_COLUMN] = videos["video_id"].map(lambda v: sources.get(v, ""))
    return videos
