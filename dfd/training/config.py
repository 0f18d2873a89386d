"""``TrainConfig``: everything one training run needs, saved as ``config.json`` in its run dir.

Nested parts (:class:`AugmentConfig`, the list of :class:`Phase`) are dataclasses too; a
config read back from JSON turns their dicts into dataclasses again in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELS = ("meso4", "mesoinception4", "temporal")
INPUT_KINDS = ("frames", "clips")
LOSSES = ("mse", "bce")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CLASS_BALANCE = ("none", "weights", "sampling")
STRATEGIES = ("default", "mirrored", "multiworker")
LOOPS = ("auto", "fit", "custom")


@dataclass
class AugmentConfig:
    """Training-time augmentations; each one is off when its switch is False / size is 0."""

    enabled: bool = True
    flip: bool = True  # horizontal flip with probability 0.5
    jpeg: bool = True  # re-compress at a random quality, with probability jpeg_prob
    jpeg_quality: tuple[int, int] = (40, 95)
    jpeg_prob: float = 0.5
    brightness: float = 0.1  # max brightness delta, as a fraction of 255
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]
    rotation: float = 10.0  # max rotation, degrees
    zoom: float = 0.1  # zoom factor drawn from [1 - z, 1 + z]

    def __post_init__(self):
        lo, hi = (int(q) for q in self.jpeg_quality)
        if not 0 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must be (lo, hi) with 0 <= lo <= hi <= 100, got "
                             f"{self.jpeg_quality!r}")
        self.jpeg_quality = (lo, hi)
        for name in ("jpeg_prob", "brightness", "contrast", "zoom"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {v!r}")
        if not 0.0 <= float(self.rotation) <= 180.0:
            raise ValueError(f"augment.rotation must be in [0, 180] degrees, got {self.rotation!r}")

    @property
    def active(self) -> bool:
        return self.enabled and bool(
            self.flip or self.jpeg or self.brightness or self.contrast or self.rotation
            or self.zoom
        )


@dataclass
class Phase:
    """One training phase: ``trainable_backbone=False`` freezes the layer named "backbone"."""

    epochs: int
    learning_rate: float
    trainable_backbone: bool = True

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ValueError(f"phase epochs must be >= 1, got {self.epochs!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"phase learning_rate must be > 0, got {self.learning_rate!r}")


@dataclass
class TrainConfig:
    """One training run. ``run_dir`` receives config, history, models, metrics and logs."""

    run_dir: str = "runs/train"
    model: str = "meso4"  # meso4 | mesoinception4 | temporal | "package.module:builder"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train: list[str] = field(default_factory=list)  # shard dirs or files
    val: list[str] = field(default_factory=list)
    train_split: str | None = None  # keep only records of this manifest split (`dfd split`)
    val_split: str | None = None
    input_kind: str = "frames"  # frames (one face) | clips (T faces + mask)
    clip_len: int = 16
    face_size: int = 256
    max_faces_per_record: int | None = None  # frames: at most this many faces per video
    batch_size: int = 32  # global batch size (split over replicas)
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training data
    validation_steps: int | None = None
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    loss: str = "mse"  # mse, as the original MesoNet, or bce
    class_balance: str = "weights"  # none | weights (from train labels) | sampling (50/50)
    # source (the shards' `source`, e.g. csv:dfdc_faces, or a unique part of it: dfdc) ->
    # share of every training batch; {} = records as read. See dfd.training.sampling.
    mix: dict[str, float] = field(default_factory=dict)
    paired: bool = False  # batches of (fake, its real original) pairs; needs an even batch
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_buffer: int = 2048
    seed: int = 0
    strategy: str = "default"  # default | mirrored | multiworker (TF_CONFIG)
    loop: str = "auto"  # auto: model.fit for default/mirrored, custom loop for multiworker
    mixed_precision: bool = False
    jit_compile: bool = False
    patience: int | None = 5  # early stopping on val_auc; None = off
    phases: list[Phase] = field(default_factory=list)  # when given, replaces epochs/learning_rate
    tensorboard: bool = True

    def __post_init__(self):
        if isinstance(self.train, (str, Path)):
            self.train = [str(self.train)]
        if isinstance(self.val, (str, Path)):
            self.val = [str(self.val)]
        self.train = [str(s) for s in self.train]
        self.val = [str(s) for s in (self.val or [])]
        self.mix = parse_mix(self.mix)
        if self.paired and int(self.batch_size) % 2:
            raise ValueError(f"paired batches hold (fake, real) pairs: batch_size must be even, "
                             f"got {self.batch_size!r}")
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.phases = [Phase(**p) if isinstance(p, dict) else p for p in (self.phases or [])]
        _one_of("input_kind", self.input_kind, INPUT_KINDS)
        _one_of("loss", self.loss, LOSSES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("class_balance", self.class_balance, CLASS_BALANCE)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("loop", self.loop, LOOPS)
        if self.model not in MODELS and ":" not in self.model:
            raise ValueError(f"model {self.model!r} is not one of {MODELS} "
                             "nor an import path 'package.module:builder'")
        for name in ("batch_size", "epochs", "clip_len", "face_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("steps_per_epoch", "validation_steps", "max_faces_per_record"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v!r}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")

    def effective_phases(self) -> list[Phase]:
        """The phases to run: ``phases`` or one phase of ``epochs`` at ``learning_rate``."""
        return self.phases or [Phase(self.epochs, self.learning_rate, True)]

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.effective_phases())

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def parse_mix(mix) -> dict[str, float]:
    """``{source: share}`` from a dict or a ``"dfdc=0.5,ffpp=0.5"`` string (shares > 0; they
    are normalised when used). ``None`` / ``""`` / ``{}`` give ``{}`` (no mixing)."""
    if not mix:
        return {}
    if isinstance(mix, str):
        pairs = {}
        for part in mix.split(","):
            name, eq, value = part.strip().partition("=")
            if not eq or not name.strip():
                raise ValueError(f"mix entry {part.strip()!r} is not SOURCE=SHARE "
                                 f"(e.g. dfdc=0.5,ffpp=0.5)")
            if name.strip() in pairs:
                raise ValueError(f"mix names source {name.strip()!r} twice")
            pairs[name.strip()] = value.strip()
        mix = pairs
    if not isinstance(mix, dict):
        raise ValueError(f"mix must be a dict or a 'SOURCE=SHARE,...' string, got {mix!r}")
    out = {}
    for name, value in mix.items():
        try:
            share = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"mix share of {name!r} is not a number: {value!r}") from None
        if not (math.isfinite(share) and share > 0):
            raise ValueError(f"mix share of {name!r} must be > 0, got {value!r}")
        out[str(name)] = share
    return out


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {list(allowed)}")
