"""Score faces with a MesoNet (or any single-face model) into the package's score tables.

* :func:`score_faces`: uint8 faces ``[N, H, W, 3]`` -> ``float64[N]`` P(fake) (the detector's call).
* :func:`predict_frames`: face shards or a :func:`dfd.readers.frame_dataset` -> frame table
  (:data:`dfd.scores.FRAME_COLUMNS`).
* :func:`predict_videos`: the same -> video table, by a named aggregation
  (:func:`dfd.scores.video_scores`).
* :func:`predict`: both tables from one pass (what ``dfd predict`` runs); from shards, the
  video table carries each record's ``source`` (the shards' context, for per-source figures).

``model`` may be a Keras model, a :class:`dfd.inference.loading.Scorer`, a ``.keras`` file, a
SavedModel folder or a registered preset name (``"meso4_df"``...):
:func:`dfd.inference.loading.load_any`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dfd import framing, progress, readers, schema
from dfd.inference.loading import load_any
from dfd.scores import (
    FRAME_COLUMNS,
    SOURCE_COLUMN,
    STATUS_ERROR,
    STATUS_OK,
    failure_row,
    video_scores,
    write_table,
)

log = logging.getLogger(__name__)


def as_scorer(model, batch_size: int = 64, weights_dir=None):
    """Any accepted model form as a :class:`dfd.inference.loading.Scorer`."""
    return load_any(model, weights_dir=weights_dir, batch_size=batch_size)


def input_size(scorer) -> tuple[int, int] | None:
    """The ``(height, width)`` a scorer's model takes, None when any size goes."""
    shape = scorer.faces_shape
    if shape is None:
        return None
    h, w = shape[-3], shape[-2]
    return (int(h), int(w)) if h and w else None


def score_faces(model, faces, batch_size: int = 64) -> np.ndarray:
    """P(fake) of each face: ``faces`` uint8 RGB ``[N, H, W, 3]`` (or one ``[H, W, 3]``).

    Faces of another size than the model's input raise ``ValueError`` naming both; an empty
    batch returns an empty array.
    """
    scorer = as_scorer(model, batch_size)
    a = np.asarray(faces)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"faces must be [N, H, W, 3] RGB, got shape {np.shape(faces)}")
    if len(a) == 0:
        return np.empty(0, np.float64)
    want = input_size(scorer)
    if want and tuple(a.shape[1:3]) != want:
        raise ValueError(f"faces are {a.shape[1]}x{a.shape[2]} but model {scorer.name!r} "
                         f"takes {want[0]}x{want[1]}")
    return scorer(a)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def score_dataset(model, source, batch_size: int = 64, model_name: str | None = None,
                  face_size: int | None = None, weights_dir=None,
                  split: str | None = None,
                  only_source: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Score every face of ``source`` (shard paths or a frame dataset of dicts with ``face``,
    ``video_id``, ``track``, ``frame_index`` and optionally ``label``).

    Returns ``(frame table, {video_id: label})``. Faces that fail to decode are skipped with
    a warning (TensorFlow logs each); unknown-label records are kept (label -1).
    ``split`` scores only the records of that manifest split (e.g. ``"test"``), and
    ``only_source`` only those of the source(s) named as stored (``csv:ffpp_faces``;
    :func:`predict` also takes a short name).
    """
    import tensorflow as tf

    scorer = as_scorer(model, batch_size, weights_dir)
    name = model_name or scorer.name
    reframe = None
    if isinstance(source, tf.data.Dataset):
        ds = source
    else:
        size = face_size or (input_size(scorer) or (None,))[0] or schema.FACE_SIZE
        ds = readers.frame_dataset(source, face_size=size, keep_unknown=True, split=split,
                                   keep=readers.from_source(only_source))
        ds = ds.ignore_errors(log_warning=True)
        reframe = _reframing(scorer, source)
    ds = ds.batch(batch_size).prefetch(2)

    cols: dict[str, list] = {"video_id": [], "track": [], "frame_index": [], "p_fake": []}
    labels: dict[str, int] = {}
    n = 0
    total = (None if isinstance(source, tf.data.Dataset) or split or only_source
             else _stored_faces(source))
    bar = progress.bar(total, f"{name} faces", "face")
    for batch in ds.as_numpy_iterator():
        p = scorer(reframe(batch["face"]) if reframe else batch["face"])
        bar.update(len(p))
        vids = [_text(v) for v in batch["video_id"]]
        cols["video_id"] += vids
        cols["track"] += [int(t) for t in batch["track"]]
        cols["frame_index"] += [int(f) for f in batch["frame_index"]]
        cols["p_fake"] += p.tolist()
        if "label" in batch:
            labels.update(zip(vids, (int(v) for v in batch["label"])))
        n += len(p)
    bar.close()
    frames = pd.DataFrame(cols)
    frames["model"] = name
    log.info("%s scored %d faces of %d videos", name, n, frames["video_id"].nunique())
    return frames[FRAME_COLUMNS], labels


def _stored_faces(source) -> int | None:
    """Faces held by the shards of ``source`` per their ``index.json`` (None: unknown)."""
    total = 0
    try:
        files = schema.resolve_shards(source)
    except (OSError, ValueError):  # the reader says what is wrong; the bar just has no total
        return None
    for d in sorted({f.parent for f in files}):
        try:
            counts = {s["file"]: int(s["faces"]) for s in schema.read_index(d)["shards"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        for f in files:
            if f.parent == d:
                if f.name not in counts:
                    return None
                total += counts[f.name]
    return total


def _reframing(scorer, source):
    """A function re-cropping shard faces to the framing the model was trained on, when the
    shards record a wider one (``dfd detect`` does the same); None when nothing is to do."""
    return framing.reframer(getattr(scorer, "face_margin", None),
                            framing.shards_face_margin(source), scorer.name,
                            getattr(scorer, "face_centre", 0.0),
                            framing.shards_face_centre(source))


def predict_frames(model, source, batch_size: int = 64, model_name: str | None = None,
                   **kwargs) -> pd.DataFrame:
    """Frame table (``video_id, track, frame_index, p_fake, model``) for every face."""
    if hasattr(source, "element_spec"):
        return score_dataset(model, source, batch_size, model_name, **kwargs)[0]
    with readers.damaged_shards_named(source):
        return score_dataset(model, source, batch_size, model_name, **kwargs)[0]


def predict(model, source, aggregation: str = "mean", batch_size: int = 64,
            model_name: str | None = None, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(frame table, video table)`` from one pass over ``source``.

    A damaged shard file raises :class:`dfd.readers.DamagedShardError` naming it: the scores
    of a set read in part would be wrong without a sign, and a damaged record's video cannot
    be named for a failure row.
    """
    if hasattr(source, "element_spec"):
        return _predict(model, source, aggregation, batch_size, model_name, **kwargs)
    with readers.damaged_shards_named(source):
        return _predict(model, source, aggregation, batch_size, model_name, **kwargs)


def _predict(model, source, aggregation, batch_size, model_name, **kwargs):
    if isinstance(kwargs.get("only_source"), str) and not hasattr(source, "element_spec"):
        kwargs["only_source"] = readers.resolve_source(source, kwargs["only_source"])
    frames, labels = score_dataset(model, source, batch_size, model_name, **kwargs)
    name = model_name or (str(frames["model"].iloc[0]) if len(frames) else None)
    videos = video_scores(frames, how=aggregation, labels=labels, model=name)
    if not hasattr(source, "element_spec"):  # shards: every record must show up
        stored = _record_facts(source, kwargs.get("split"), kwargs.get("only_source"))
        scored = set(videos["video_id"])
        missing = [failure_row(vid, STATUS_ERROR, "no face of this record could be decoded",
                               label=lab, model=name or "", aggregation=aggregation)
                   for vid, (lab, _, _) in stored.items() if vid not in scored]
        if missing:
            log.warning("%d record(s) had no decodable face: %s", len(missing),
                        [m["video_id"] for m in missing[:10]])
        # a partly damaged record is scored on the faces that decode, and says so
        partial = []
        for i, row in videos.iterrows():
            n_stored = stored.get(row["video_id"], (None, 0, ""))[1]
            if row["status"] == STATUS_OK and row["n_faces"] < n_stored:
                videos.at[i, "error"] = (f"{n_stored - row['n_faces']} of {n_stored} stored faces "
                                         "could not be decoded; scored on the rest")
                partial.append(row["video_id"])
        if partial:
            log.warning("%d video(s) scored on fewer faces than stored (undecodable faces): %s",
                        len(partial), partial[:10])
        if missing:
            videos = pd.concat([videos, pd.DataFrame(missing)], ignore_index=True)
        videos[SOURCE_COLUMN] = videos["video_id"].map(
            lambda v: stored.get(v, (None, 0, ""))[2])
    return frames, videos


def _record_facts(source, split=None, only_source=None) -> dict[str, tuple[int, int, str]]:
    """``{video_id: (label, faces stored, source)}`` over every record of the shards (faces
    are counted, not decoded; a video's tracks are summed; ``source``: the shards' context,
    e.g. ``csv:dfdc_faces``)."""
    import tensorflow as tf

    ds = readers.records(source, keep_unknown=True, split=split,
                         keep=readers.from_source(only_source))
    ds = ds.map(lambda r: (r["video_id"], r["label"], tf.size(r[schema.FACE]),
                           r[schema.SOURCE]))
    out: dict[str, tuple[int, int, str]] = {}
    for v, lab, n, src in ds.as_numpy_iterator():
        vid = _text(v)
        out[vid] = (int(lab), out.get(vid, (0, 0, ""))[1] + int(n), _text(src))
    return out


def predict_videos(model, source, aggregation: str = "mean", batch_size: int = 64,
                   model_name: str | None = None, **kwargs) -> pd.DataFrame:
    """Video table (one row per video, labels from the shards) by the named aggregation."""
    return predict(model, source, aggregation, batch_size, model_name, **kwargs)[1]


def predict_cached(model, source, path, model_name: str | None = None,
                   aggregation: str = "mean", **kwargs) -> Path:
    """The video table of :func:`predict` written to ``path`` (CSV or Parquet) unless a
    table is there already, which is then reused as it is (a tool re-run after a crash or
    with one more model scores only what is new). Returns ``path``."""
    path = Path(path)
    if path.exists():
        log.info("%s: reusing the scores in %s", model_name or model, path)
        return path
    _, videos = predict(model, source, aggregation, model_name=model_name, **kwargs)
    return write_table(videos, path)


def load_face_images(paths, size: int = 256) -> np.ndarray:
    """Read face images as uint8 RGB ``[N, size, size, 3]``; other sizes are resized with
    nearest-neighbour interpolation, as the authors' ``ImageDataGenerator`` did."""
    out = []
    for p in paths:
        with Image.open(Path(p)) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.NEAREST)
            out.append(np.asarray(im, np.uint8))
    return np.stack(out) if out else np.empty((0, size, size, 3), np.uint8)
