"""Training input over several sources: per-source mixing and (fake, real original) pairs.

* ``mix`` (``TrainConfig.mix``, ``dfd train --mix dfdc=0.5,ffpp=0.5``): every training batch
  holds each source (the shards' ``source`` context, e.g. ``csv:dfdc_faces``) in its set
  share, and within a source REAL and FAKE 50/50 (or as read, with ``class_balance="none"``).
  Shares are exact per batch, not only on average: each batch is a shuffled fixed pattern of
  slots (largest-remainder rounding of ``share * batch_size``), filled by
  ``tf.data.Dataset.choose_from_datasets`` from one endless stream per (source, label). So
  DFDC's 8,400 training crops cannot swamp FF++'s 196 videos.
* ``paired`` (``--paired``): batches are built of (fake, the real video it was made from)
  pairs, both of one ``original`` (the optional shard key: DFDC ``original``, FF++ target).
  A pair index is built once from the shards' context (which originals have a REAL and a
  FAKE record in the training split); records of those originals are grouped with
  ``group_by_window`` (window = the number of records of that original, so a window closes
  as soon as all of them arrived), each FAKE is paired with the REAL, and the pair travels as
  one unit until the final ``unbatch``: with an even batch size every fake has its original in
  the same batch, at the neighbouring position. Records without a known original, and
  originals without both labels, are left out (logged). A record contributes one random face
  (frames) or one random clip (clips) each time it is drawn. With ``mix`` too, the pairs of
  each source fill their share of every batch.

Both modes give an endless stream (an epoch is ``steps_per_epoch`` batches) and per-example
weights of 1: the balance comes from the sampling, so ``class_balance`` weights do not apply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from dfd import readers, schema
from dfd.labels import FAKE, REAL, UNKNOWN, label_name
from dfd.training.config import TrainConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the shards' context


def shard_table(source, split: str | None = None) -> pd.DataFrame:
    """One row per labelled record (``video_id, label, source, original, split, faces,
    file``), parsed from the context only (no face is decoded). ``file`` lets a per-source
    stream read only the shards that hold that source."""
    import tensorflow as tf

    keys = (schema.VIDEO_ID, schema.SOURCE, schema.ORIGINAL, schema.SPLIT)
    ctx = {k: tf.io.FixedLenFeature([], tf.string, default_value="") for k in keys}
    ctx[schema.LABEL] = tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN)
    seq = {schema.FRAME_INDEX: tf.io.FixedLenSequenceFeature([], tf.int64)}

    def parse(s):
        c, q = tf.io.parse_single_sequence_example(s, context_features=ctx, sequence_features=seq)
        c["faces"] = tf.size(q[schema.FRAME_INDEX])
        return c

    cols: dict[str, list] = {k: [] for k in (*keys, schema.LABEL, "faces", "file")}
    for f in (str(f) for f in schema.resolve_shards(source)):
        ds = tf.data.TFRecordDataset(f).map(parse, num_parallel_calls=readers.AUTOTUNE)
        for batch in ds.batch(4096).as_numpy_iterator():
            for k in cols:
                if k == "file":
                    cols[k] += [f] * len(batch[schema.LABEL])
                    continue
                v = batch[k]
                cols[k] += [x.decode() for x in v] if v.dtype == object else v.tolist()
    table = pd.DataFrame(cols)
    table = table[table[schema.LABEL].isin([REAL, FAKE])]
    if split:
        table = table[table[schema.SPLIT] == split]
    return table.reset_index(drop=True)


def resolve_mix(mix: dict[str, float], available) -> dict[str, float]:
    """``mix`` keyed by the shards' full source names, shares normalised to sum 1.

    A key matches a source exactly, or by its name after the layout prefix
    (``dfdc_faces`` for ``csv:dfdc_faces``), or as the unique source whose name starts
    with it (``dfdc``). Sources of the shards that ``mix`` leaves out are not trained on.
    """
    available = sorted({str(s) for s in available})
    out: dict[str, float] = {}
    for key, share in mix.items():
        hits = schema.match_sources(key, available)
        if len(hits) != 1:
            what = "matches no source" if not hits else f"matches several sources {hits}"
            raise ValueError(f"mix source {key!r} {what}; the training shards hold {available}")
        if hits[0] in out:
            raise ValueError(f"mix names source {hits[0]!r} twice")
        out[hits[0]] = float(share)
    left = [s for s in available if s not in out]
    if left:
        log.warning("mix leaves out source(s) %s: they are not trained on", left)
    total = sum(out.values())
    return {s: v / total for s, v in out.items()}


def training_record(cfg) -> dict:
    """What a run trains on, for its ``preset.json``: ``train_sources`` (sources of the
    training records used, after ``train_split`` and ``mix``), ``fake_sources`` (those whose
    own FAKE records it sees: none with ``fakes="sbi"``), ``fakes``, ``sbi_ratio``,
    ``train_split``. :mod:`dfd.evaluation.compare` decides in- vs cross-source from it."""
    table = shard_table(cfg.train, cfg.train_split)
    available = sorted(set(table[schema.SOURCE]))
    used = sorted(resolve_mix(cfg.mix, available)) if cfg.mix else available
    with_fakes = set(table.loc[table[schema.LABEL] == FAKE, schema.SOURCE])
    fake_sources = [] if cfg.fakes == "sbi" else [s for s in used if s in with_fakes]
    return {"train_sources": used, "fake_sources": fake_sources, "fakes": cfg.fakes,
            "sbi_ratio": float(cfg.sbi_ratio) if cfg.fakes == "both" else None,
            "train_split": cfg.train_split}


# ------------------------------------------------------------------ exact batch shares


def batch_slots(shares, slots: int) -> list[int]:
    """Stream index of each of ``slots`` batch positions, ``share * slots`` each, rounded by
    largest remainder (ties to the earlier stream): ``[0.5, 0.25, 0.25], 4 -> [0, 0, 1, 2]``."""
    shares = np.asarray(shares, dtype=np.float64)
    if slots < 1 or len(shares) == 0 or (shares <= 0).any():
        raise ValueError(f"need slots >= 1 and shares > 0, got {slots} slots, shares {list(shares)}")
    raw = shares / shares.sum() * slots
    n = np.floor(raw).astype(int)
    for i in sorted(range(len(raw)), key=lambda i: (-(raw[i] - n[i]), i))[: slots - n.sum()]:
        n[i] += 1
    if (n == 0).any():
        log.warning("batch of %d slots is too small for shares %s: stream(s) %s get no slot",
                    slots, [round(float(s), 3) for s in shares], np.flatnonzero(n == 0).tolist())
    return [i for i, k in enumerate(n) for _ in range(k)]


def choose_exact(streams: list, shares, slots: int, seed: int | None = None):
    """Elements of endless ``streams`` such that every run of ``slots`` consecutive
    elements (aligned to the start) holds ``batch_slots(shares, slots)`` of each stream, in
    a shuffled order."""
    import tensorflow as tf

    pattern = tf.constant(batch_slots(shares, slots), tf.int64)
    choice = (tf.data.Dataset.from_tensors(pattern).repeat()
              .map(lambda p: tf.random.shuffle(p, seed=seed)).unbatch())
    return tf.data.Dataset.choose_from_datasets(streams, choice)


# ------------------------------------------------------------------ pairs


def pair_index(table: pd.DataFrame) -> pd.DataFrame:
    """Per ``original`` with at least one REAL and one FAKE record: ``records`` (window
    size), ``real``, ``fake`` counts; rows sorted by original."""
    t = table[table[schema.ORIGINAL] != ""]
    per = t.groupby(schema.ORIGINAL)[schema.LABEL].agg(
        records="size", real=lambda s: int((s == REAL).sum()), fake=lambda s: int((s == FAKE).sum()))
    return per[(per["real"] > 0) & (per["fake"] > 0)].sort_index()


def _pair_units(cfg: TrainConfig, table: pd.DataFrame, src: str | None, seed: int):
    """Endless units of one (fake, real) pair: ``(inputs[2, ...], labels [1., 0.])``; with
    self-blended fakes (``cfg.fakes`` not ``"real"``) the inputs are ``{"face", "landmarks",
    "crop_box"}``, as the unpaired examples."""
    import tensorflow as tf

    sub = table if src is None else table[table[schema.SOURCE] == src]
    index = pair_index(sub)
    where = f"source {src}" if src else "the training shards"
    if index.empty:
        raise ValueError(f"paired batches: no original in {where} (split {cfg.train_split!r}) "
                         "has both a REAL and a FAKE record; the shards need the 'original' "
                         "key (re-run dfd prep from a manifest with an original column)")
    unpaired = len(sub) - int(index["records"].sum())
    log.info("paired batches from %s: %d pairs over %d originals (%d records left out: no "
             "original, or no partner)", where, int(index["fake"].sum()), len(index), unpaired)
    keys = tf.constant(list(index.index), tf.string)
    lookup = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(index), dtype=tf.int64)), -1)
    sizes = tf.constant(index["records"].to_numpy(np.int64))

    def keep(rec):
        ok = lookup.lookup(rec[schema.ORIGINAL]) >= 0
        return ok if src is None else tf.logical_and(ok, tf.equal(rec[schema.SOURCE], src))

    clips = cfg.input_kind == "clips"
    blend = not clips and cfg.fakes != "real"

    def sample(rec):
        n = tf.shape(rec[schema.FACE])[0]
        out = {"key": lookup.lookup(rec[schema.ORIGINAL]), "label": rec[schema.LABEL]}
        if clips:
            pos, mask = readers.clip_positions(n, cfg.clip_len, "random", seed)
            out["faces"], out["mask"] = tf.gather(rec[schema.FACE], pos), mask
        else:
            i = tf.random.uniform([], 0, n, tf.int32, seed=seed)
            out["faces"] = rec[schema.FACE][i]
            if blend:  # the face's landmarks travel with it for self-blended fakes
                out["landmarks"], out["crop_box"] = rec[schema.LANDMARKS][i], rec[schema.CROP_BOX][i]
        return out

    def pairs(window):
        lab = window["label"]
        has_real = tf.reduce_any(tf.equal(lab, REAL))
        real_i = tf.argmax(tf.cast(tf.equal(lab, REAL), tf.int32), output_type=tf.int32)
        fake_i = tf.cast(tf.where(tf.logical_and(tf.equal(lab, FAKE), has_real))[:, 0], tf.int32)
        k = tf.size(fake_i)

        def two(v):
            real = tf.repeat(v[real_i][None], k, axis=0)
            return tf.stack([tf.gather(v, fake_i), real], axis=1)

        unit = {"faces": two(window["faces"])}
        if clips:
            unit["mask"] = two(window["mask"])
        if blend:
            unit["landmarks"], unit["crop_box"] = two(window["landmarks"]), two(window["crop_box"])
        return tf.data.Dataset.from_tensor_slices(unit)

    files = sorted(sub["file"].unique())  # only the shards that hold this source
    ds = readers.records(files, shuffle=True, seed=seed, split=cfg.train_split, keep=keep)
    ds = (ds.shuffle(max(2, min(len(sub), cfg.shuffle_buffer)), seed=seed,
                     reshuffle_each_iteration=True)
          .map(sample, num_parallel_calls=readers.AUTOTUNE).repeat()
          .group_by_window(key_func=lambda s: s["key"],
                           reduce_func=lambda key, w: w.batch(sizes[key]).flat_map(pairs),
                           window_size_func=lambda key: sizes[key])
          .shuffle(max(2, min(len(index), cfg.shuffle_buffer // 8)), seed=seed))

    def decode(unit):
        y = tf.constant([float(FAKE), float(REAL)])
        if not clips:
            faces = tf.stack([readers.decode_face(unit["faces"][j], cfg.face_size)
                              for j in range(2)])
            if blend:  # the inputs dfd.training.sbi.apply_sbi takes
                return {"face": faces, "landmarks": unit["landmarks"],
                        "crop_box": unit["crop_box"]}, y
            return faces, y
        faces = tf.stack([
            tf.map_fn(lambda b: readers.decode_face(b, cfg.face_size), unit["faces"][j],
                      fn_output_signature=tf.TensorSpec([cfg.face_size] * 2 + [3], tf.uint8))
            for j in range(2)])
        faces = faces * tf.cast(unit["mask"], tf.uint8)[:, :, None, None, None]
        return {"faces": faces, "mask": unit["mask"]}, y

    return ds.map(decode, num_parallel_calls=readers.AUTOTUNE)


# ------------------------------------------------------------------ the training stream


def source_records(table: pd.DataFrame, src: str, label: int | None = None):
    """``(files, keep)``: the shards of ``table`` that hold source ``src`` and a record filter
    for that source (and ``label``, when given)."""
    import tensorflow as tf

    def keep(rec):
        ok = tf.equal(rec[schema.SOURCE], src)
        return ok if label is None else tf.logical_and(ok, tf.equal(rec[schema.LABEL], label))

    return sorted(table.loc[table[schema.SOURCE] == src, "file"].unique()), keep


def training_examples(cfg: TrainConfig, examples: Callable, batch_size: int):
    """Unbatched, endless ``(inputs, label)`` training examples of ``cfg.mix`` /
    ``cfg.paired``, aligned so that each run of ``batch_size`` examples from the start is one
    batch with the set shares (and whole pairs). ``examples(keep, files)`` gives the
    plain (shuffled, unbatched) examples of the records of ``files`` that ``keep`` accepts."""

    table = shard_table(cfg.train, cfg.train_split)
    if table.empty:
        raise ValueError(f"no labelled training records in {cfg.train} (split {cfg.train_split!r})")
    present = sorted(table[schema.SOURCE].unique())
    shares = resolve_mix(cfg.mix, present) if cfg.mix else {}
    seed = cfg.seed
    if cfg.paired:
        if batch_size % 2:
            raise ValueError(f"paired batches need an even batch size, got {batch_size}")
        if shares:
            units = [_pair_units(cfg, table, s, seed) for s in shares]
            ds = choose_exact(units, list(shares.values()), batch_size // 2, seed)
        else:
            ds = _pair_units(cfg, table, None, seed)
        return ds.unbatch()
    streams, weights = [], []
    counts = table.groupby([schema.SOURCE, schema.LABEL]).size()
    for src, share in shares.items():
        labels = [None] if cfg.class_balance == "none" else [REAL, FAKE]
        for lab in labels:
            n = int(counts.get(src, pd.Series(dtype=int)).sum() if lab is None
                    else counts.get((src, lab), 0))
            if n == 0:
                what = "records" if lab is None else f"{label_name(lab)} records"
                raise ValueError(f"mix: source {src!r} has no {what} in the training shards "
                                 f"(split {cfg.train_split!r})")
            files, keep = source_records(table, src, lab)
            streams.append(examples(keep, files).repeat())
            weights.append(share / len(labels))
    log.info("mixed batches of %d: %s", batch_size, ", ".join(
        f"{s} {math.floor(v * 1000) / 10:g}%" for s, v in shares.items()))
    return choose_exact(streams, weights, batch_size, seed)
