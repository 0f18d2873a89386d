"""Training / validation ``tf.data`` pipelines over face shards: ``(inputs, label, weight)``.

* frames: ``inputs`` is a uint8 face ``[S, S, 3]``; clips: ``{"faces": uint8[T,S,S,3],
  "mask": bool[T]}``. Labels are float32 P(fake) targets; ``weight`` is the per-example
  class weight (1.0 unless ``class_balance="weights"``).
* ``class_balance="sampling"`` draws FAKE and REAL 50/50 with ``sample_from_datasets``
  (an endless stream: an epoch is ``steps_per_epoch`` batches).
* ``mix`` (per-source shares of every batch) and ``paired`` ((fake, real original) pairs)
  build the training stream in :mod:`dfd.training.sampling`.
* ``fakes="sbi"`` / ``"both"`` add self-blended fakes (:mod:`dfd.training.sbi`) before the
  augmentations: ``"sbi"`` trains on REAL faces only, each paired with its fake (balanced by
  construction: class balancing is skipped); ``"both"`` replaces a ``sbi_ratio`` share of
  the FAKE examples.
* ``reweight="sharpness"`` multiplies each training example's weight so that REAL and FAKE
  have the same sharpness distribution (:mod:`dfd.training.reweight`; weights fitted by
  :func:`measure_weights`), before self-blended fakes and augmentation (which keep it).
* ``augment.sharpness_match`` (the REAL faces' sharpness moved onto the FAKE faces', per
  batch; :func:`dfd.training.augment.apply_sharpness_match`) and ``augment.codec_prob``
  (H.264 re-encodes, :func:`dfd.training.augment.apply_codec`) run on whole batches, after
  batching, in that order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

import dfd.training.reweight as reweight
import dfd.training.sampling as sampling
from dfd import readers, schema
from dfd.labels import FAKE, REAL
from dfd.training.augment import apply_codec, apply_sharpness_match, make_augment_fn
from dfd.training.config import TrainConfig
from dfd.training.sbi import apply_sbi

log = logging.getLogger(__name__)


@dataclass
class LabelCounts:
    """Training examples per class (faces for frames, records for clips)."""

    real: int
    fake: int

    @property
    def total(self) -> int:
        return self.real + self.fake

    def class_weights(self) -> dict[int, float]:
        """``total / (2 * n_class)`` per class, so both classes weigh the same overall."""
        if self.real == 0 or self.fake == 0:
            raise ValueError(
                f"class weights need both classes in the training data, got {self.real} REAL "
                f"and {self.fake} FAKE examples"
            )
        return {REAL: self.total / (2.0 * self.real), FAKE: self.total / (2.0 * self.fake)}


def count_labels(source, input_kind: str = "frames", max_faces_per_record: int | None = None,
                 split: str | None = None):
    """Count REAL / FAKE examples in shards (parses labels and frame indices only)."""
    import tensorflow as tf

    ctx = {schema.LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
           schema.SPLIT: tf.io.FixedLenFeature([], tf.string, default_value="")}
    seq = {schema.FRAME_INDEX: tf.io.FixedLenSequenceFeature([], tf.int64)}

    def parse(s):
        c, q = tf.io.parse_single_sequence_example(s, context_features=ctx,
                                                   sequence_features=seq)
        return (c[schema.LABEL], tf.shape(q[schema.FRAME_INDEX], out_type=tf.int64)[0],
                c[schema.SPLIT])

    files = [str(f) for f in schema.resolve_shards(source)]
    ds = tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=readers.AUTOTUNE)
    if split:
        ds = ds.filter(lambda lab, n, sp: tf.equal(sp, split))
    ds = ds.map(lambda lab, n, sp: (lab, n))
    counts = {REAL: 0, FAKE: 0}
    for labels, n in ds.batch(4096).as_numpy_iterator():
        if input_kind == "frames":
            n = n if max_faces_per_record is None else n.clip(max=max_faces_per_record)
        else:
            n = n * 0 + 1
        for lab in (REAL, FAKE):
            counts[lab] += int(n[labels == lab].sum())
    return LabelCounts(real=counts[REAL], fake=counts[FAKE])


def effective_counts(cfg: TrainConfig, counts: LabelCounts) -> LabelCounts:
    """The training examples an epoch holds: with ``fakes="sbi"`` each REAL face also gives
    one FAKE and the shards' FAKE faces are left out."""
    if cfg.fakes == "sbi":
        return LabelCounts(real=counts.real, fake=counts.real)
    return counts


def _examples(cfg: TrainConfig, source, training: bool, keep=None, measure: bool = False):
    """Unbatched ``(inputs, label)`` pairs of one source (``keep``: a record filter; inputs
    keep the landmarks when self-blended fakes will be made from them). ``measure``: the
    training split's examples in order, every face / uniform clips, for
    :func:`measure_weights`."""
    import tensorflow as tf

    split = cfg.train_split if training or measure else cfg.val_split
    if cfg.input_kind == "frames":
        ds = readers.frame_dataset(
            source, face_size=cfg.face_size, shuffle=training, shuffle_buffer=cfg.shuffle_buffer,
            seed=cfg.seed, max_faces_per_record=cfg.max_faces_per_record, split=split, keep=keep,
        )
        if training and cfg.fakes != "real":
            keys = ("face", "landmarks", "crop_box")
            return ds.map(lambda el: ({k: el[k] for k in keys},
                                      tf.cast(el["label"], tf.float32)),
                          num_parallel_calls=readers.AUTOTUNE)
        return readers.as_xy(ds, "face")
    ds = readers.clip_dataset(
        source, clip_len=cfg.clip_len, face_size=cfg.face_size,
        mode="random" if training and not measure else "uniform", shuffle=training,
        shuffle_buffer=max(1, cfg.shuffle_buffer // 8), seed=cfg.seed, split=split, keep=keep,
    )
    return readers.as_xy(ds, "faces", with_mask=True)


def measure_weights(cfg: TrainConfig) -> reweight.PropertyWeights:
    """Fit ``cfg.reweight``'s weights on one pass over the training split's examples
    (with ``mix``, each source weighted to its batch share, half per class unless
    ``class_balance="none"`` draws its classes as read)."""

    table = sampling.shard_table(cfg.train, cfg.train_split)
    if table.empty:
        raise ValueError(f"no labelled training records in {cfg.train} (split {cfg.train_split!r})")
    shares = (sampling.resolve_mix(cfg.mix, sorted(set(table[schema.SOURCE])))
              if cfg.mix else {None: 1.0})
    labels, values, item = [], [], []
    for src, share in shares.items():
        files, keep = (cfg.train, None) if src is None else sampling.source_records(table, src)
        ds = _examples(cfg, files, False, keep, measure=True).batch(256).map(
            lambda x, y: (reweight.example_property(x, cfg.input_kind), y),
            num_parallel_calls=readers.AUTOTUNE)
        lab, val = [], []
        for v, y in ds.as_numpy_iterator():
            val.append(v)
            lab.append((y > 0.5).astype(int))
        lab = np.concatenate(lab) if lab else np.zeros(0, int)
        labels.append(lab)
        values.append(np.concatenate(val) if val else np.zeros(0))
        w = np.ones(len(lab))
        if src is not None and cfg.class_balance == "none" and not cfg.paired:
            w[:] = share / max(1, len(lab))  # the source's share, its classes as read
        elif src is not None:  # each (source, class) carries its batch share
            for c in (REAL, FAKE):
                w[lab == c] = share / max(1, int((lab == c).sum()))
        item.append(w)
    return reweight.fit_weights(np.concatenate(labels), np.concatenate(values),
                                np.concatenate(item), cfg.reweight_bins, cfg.reweight)


def make_dataset(cfg: TrainConfig, training: bool, counts: LabelCounts | None = None,
                 batch_size: int | None = None, drop_remainder: bool | None = None,
                 reweights: reweight.PropertyWeights | None = None):
    """The batched training (``training=True``) or validation pipeline of ``cfg``.

    ``counts`` (from :func:`count_labels`) is needed for ``class_balance="weights"``,
    ``reweights``: the fitted weights of ``reweight`` (measured here when not given).
    Training data repeats forever when ``repeat`` is implied (sampling balance, ``mix``,
    ``paired``) - callers then give ``steps_per_epoch``.
    """
    import tensorflow as tf

    source = cfg.train if training else cfg.val
    if not source:
        raise ValueError(f"no {'training' if training else 'validation'} shards given in the config")
    batch_size = batch_size or cfg.batch_size
    weights = {REAL: 1.0, FAKE: 1.0}
    mixed = training and bool(cfg.mix or cfg.paired)
    if mixed:  # per-source shares / (fake, real) pairs: balanced by the sampling itself
        if cfg.class_balance == "weights":
            log.info("mix/paired batches are balanced by sampling: class weights not used")
        ds = sampling.training_examples(
            cfg, lambda keep, files: _examples(cfg, files, True, keep), batch_size)
    else:
        ds = _examples(cfg, source, training)
    if training and cfg.fakes == "sbi":
        log.info("fakes=sbi: REAL faces only, each paired with its self-blended fake "
                 "(class_balance %r not needed)", cfg.class_balance)
    elif mixed:
        pass
    elif training and cfg.class_balance == "sampling":
        per_class = [ds.filter(lambda x, y, lab=lab: tf.equal(y, float(lab))).repeat()
                     for lab in (REAL, FAKE)]
        ds = tf.data.Dataset.sample_from_datasets(per_class, weights=[0.5, 0.5], seed=cfg.seed)
    elif training and cfg.class_balance == "weights":
        if counts is None:
            raise ValueError("class_balance='weights' needs the training label counts")
        weights = counts.class_weights()
        log.info("class weights: REAL %.3f, FAKE %.3f (from %d REAL, %d FAKE)",
                 weights[REAL], weights[FAKE], counts.real, counts.fake)
    w_real, w_fake = float(weights[REAL]), float(weights[FAKE])
    ds = ds.map(lambda x, y: (x, y, tf.where(y > 0.5, w_fake, w_real)),
                num_parallel_calls=readers.AUTOTUNE)
    if training and cfg.reweight != "none":
        ds = reweight.apply_weights(ds, reweights or measure_weights(cfg), cfg.input_kind)
    if training and cfg.fakes != "real":
        ds = apply_sbi(ds, cfg.fakes, cfg.sbi_ratio, batch_size, cfg.seed, cfg.sbi)
    if training and cfg.augment.active:
        ds = ds.map(make_augment_fn(cfg.augment, cfg.input_kind),
                    num_parallel_calls=readers.AUTOTUNE)
    if drop_remainder is None:
        drop_remainder = False
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if training and cfg.augment.match_active:
        ds = apply_sharpness_match(ds, cfg.augment, cfg.input_kind, cfg.seed)
    if training and cfg.augment.codec_active:
        ds = apply_codec(ds, cfg.augment, cfg.input_kind, cfg.seed)
    return ds.prefetch(readers.AUTOTUNE)
