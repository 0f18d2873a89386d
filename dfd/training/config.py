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

from dfd import presets

MODELS = ("meso4", "mesoinception4", "temporal")
INPUT_KINDS = ("frames", "clips")
LOSSES = ("mse", "bce")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CLASS_BALANCE = ("none", "weights", "sampling")
STRATEGIES = ("default", "mirrored", "multiworker")
LOOPS = ("auto", "fit", "custom")
FAKES = ("real", "sbi", "both")
REWEIGHT = ("none", "sharpness")


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
    # --- robustness to what the internet does to video (all off by default)
    shift: float = 0.0  # framing: max shift of the crop, fraction of its side (with zoom)
    rescale_prob: float = 0.0  # down-then-up scaling, with this probability
    rescale_range: tuple[float, float] = (0.25, 0.75)  # the downscale factor's range
    blur_prob: float = 0.0  # Gaussian blur, with this probability
    blur_sigma: tuple[float, float] = (0.5, 2.0)  # its sigma's range, pixels
    # --- against a sharpness shortcut: blur REAL faces only (docs/training.md)
    real_blur_prob: float = 0.0  # Gaussian blur of a REAL face (label 0), this probability
    real_blur_sigma: tuple[float, float] = (0.3, 1.0)  # its sigma's range, pixels
    # share of a batch's REAL faces whose sharpness is moved to the batch's FAKE sharpness at
    # the same rank (blur or unsharp mask; on whole batches, after the per-face maps).
    # Measured harmful: models learn the operation as a REAL cue (docs/generalisation.md)
    sharpness_match: float = 0.0
    codec_prob: float = 0.0  # H.264 re-encode (PyAV, one clip per batch), this probability
    codec_crf: tuple[int, int] = (18, 40)  # the constant rate factor's range (one per batch)
    # --- against one-region shortcuts: erase a random rectangle (random erasing / cutout)
    cutout_prob: float = 0.0  # grey rectangle over part of the face, with this probability
    cutout_area: tuple[float, float] = (0.02, 0.25)  # its area's range, fraction of the face

    def __post_init__(self):
        lo, hi = (int(q) for q in self.jpeg_quality)
        if not 0 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must be (lo, hi) with 0 <= lo <= hi <= 100, got "
                             f"{self.jpeg_quality!r}")
        self.jpeg_quality = (lo, hi)
        lo, hi = (int(q) for q in self.codec_crf)
        if not 0 <= lo <= hi <= 51:
            raise ValueError(f"codec_crf must be (lo, hi) with 0 <= lo <= hi <= 51, got "
                             f"{self.codec_crf!r}")
        self.codec_crf = (lo, hi)
        lo, hi = (float(q) for q in self.rescale_range)
        if not 0.05 <= lo <= hi <= 1.0:
            raise ValueError(f"rescale_range must be (lo, hi) with 0.05 <= lo <= hi <= 1, got "
                             f"{self.rescale_range!r}")
        self.rescale_range = (lo, hi)
        lo, hi = (float(q) for q in self.cutout_area)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"cutout_area must be (lo, hi) with 0 < lo <= hi <= 1, got "
                             f"{self.cutout_area!r}")
        self.cutout_area = (lo, hi)
        for name in ("blur_sigma", "real_blur_sigma"):
            lo, hi = (float(q) for q in getattr(self, name))
            if not 0.0 < lo <= hi <= 10.0:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi <= 10, got "
                                 f"{getattr(self, name)!r}")
            setattr(self, name, (lo, hi))
        for name in ("jpeg_prob", "brightness", "contrast", "zoom", "shift", "rescale_prob",
                     "blur_prob", "real_blur_prob", "sharpness_match", "codec_prob",
                     "cutout_prob"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {v!r}")
        if not 0.0 <= float(self.rotation) <= 180.0:
            raise ValueError(f"augment.rotation must be in [0, 180] degrees, got {self.rotation!r}")

    @property
    def active(self) -> bool:
        return self.enabled and bool(
            self.flip or self.jpeg or self.brightness or self.contrast or self.rotation
            or self.zoom or self.shift or self.rescale_prob or self.blur_prob
            or self.real_blur_prob or self.cutout_prob
        )

    @property
    def match_active(self) -> bool:
        """Sharpness matching runs on whole batches, apart from :attr:`active`'s per-face maps."""
        return self.enabled and self.sharpness_match > 0

    @property
    def codec_active(self) -> bool:
        """The H.264 re-encode runs on whole batches, apart from :attr:`active`'s per-face maps."""
        return self.enabled and self.codec_prob > 0


def _section(cls, values: dict, name: str):
    """``cls(**values)`` for a nested section of the config, unknown keys named."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


@dataclass
class SBIConfig:
    """Self-blended fakes (:mod:`dfd.training.sbi`): how the source copy is altered and the mask.

    Fractions are of the face crop's side unless said otherwise; ``(lo, hi)`` are ranges
    drawn uniformly per image.
    """

    rgb_shift: float = 0.04  # per-channel colour shift, fraction of 255
    hue: float = 0.01  # hue shift, fraction of the hue circle
    saturation: float = 0.15  # saturation factor from [1 - s, 1 + s]
    value: float = 0.2  # HSV value factor from [1 - v, 1 + v]
    brightness: float = 0.1  # brightness delta, fraction of 255
    contrast: float = 0.1  # contrast factor from [1 - c, 1 + c]
    sharpness: tuple[float, float] = (-1.0, 1.5)  # < 0 blurs (-1: fully), > 0 sharpens
    # instead of the sharpness step, with this probability: a loss of resolution, the
    # source copy shrunk by one of ``downscale_factors`` (nearest) and enlarged back
    # (bilinear), at the training face size. Shiohara and Yamasaki's recipe picks this or
    # a sharpening half the time each: a face swap's inner face is usually the blurrier.
    downscale_prob: float = 0.0
    downscale_factors: tuple[int, ...] = (2, 4)
    shift: float = 0.03  # translation of the source copy
    scale: float = 0.05  # its scale factor from [1 - s, 1 + s]
    # True: the target (the REAL example of the pair) is moved by a shift and scale of its
    # own too, so that both classes are resampled once. False (the published recipe): the
    # target is the face as it is and only the source is resampled, which makes the fake's
    # inner face the blurrier in most pairs, as a face swap's warped face is. Measured
    # (docs/generalisation.md, eighteenth session): True lost 0.07 ROC-AUC on DFDC's unseen
    # fakes; the blur of a resampled face is part of what transfers.
    move_target: bool = False
    # True: a source copy that its colour or sharpness change takes out of [0, 255] is
    # mapped back into it as a whole (one linear map per image) instead of clipped. Clipping
    # flattens highlights inside the mask (measured on 288 DFDC faces: 0.25% of the fakes'
    # channel values there at 255 against 0.085% of the reals'), a trace no face swap is
    # known to leave. False: clipped, as the published recipe's uint8 augmentations do.
    # Measured (docs/generalisation.md, nineteenth session): True raised the validation
    # mean on unseen sources from 0.646 to 0.673; the shipped default trained with it.
    keep_range: bool = False
    mask_scale: tuple[float, float] = (0.8, 1.1)  # the landmark hull's size factor
    deform: float = 0.03  # max displacement of the mask boundary (smooth random field)
    feather: tuple[float, float] = (0.02, 0.12)  # width of the mask's soft edge
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # drawn per image

    def __post_init__(self):
        for name in ("rgb_shift", "hue", "saturation", "value", "brightness", "contrast",
                     "shift", "scale", "deform"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 0.5:
                raise ValueError(f"sbi.{name} must be in [0, 0.5], got {v!r}")
        for name, lo_min, hi_max in (("sharpness", -1.0, 3.0), ("mask_scale", 0.3, 1.5),
                                     ("feather", 0.0, 0.5)):
            lo, hi = (float(q) for q in getattr(self, name))
            if not lo_min <= lo <= hi <= hi_max:
                raise ValueError(f"sbi.{name} must be (lo, hi) with {lo_min} <= lo <= hi <= "
                                 f"{hi_max}, got {getattr(self, name)!r}")
            setattr(self, name, (lo, hi))
        if not 0.0 <= float(self.downscale_prob) <= 1.0:
            raise ValueError(f"sbi.downscale_prob must be in [0, 1], got {self.downscale_prob!r}")
        factors = tuple(self.downscale_factors)
        if not factors or not all(isinstance(f, int) and 2 <= f <= 16 for f in factors):
            raise ValueError(f"sbi.downscale_factors must be whole numbers in [2, 16], got "
                             f"{self.downscale_factors!r}")
        self.downscale_factors = factors
        self.blend_ratios = tuple(float(r) for r in self.blend_ratios)
        if not self.blend_ratios or not all(0.0 < r <= 1.0 for r in self.blend_ratios):
            raise ValueError(f"sbi.blend_ratios must be values in (0, 1], got "
                             f"{self.blend_ratios!r}")


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
    # fakes seen in training: "real" (the shards' own), "sbi" (REAL faces only, each paired
    # with its self-blended fake, dfd.training.sbi), "both" (a sbi_ratio share of the FAKE
    # examples replaced by self-blended ones)
    fakes: str = "real"
    sbi_ratio: float = 0.5
    sbi: SBIConfig = field(default_factory=SBIConfig)
    # loss weights that give REAL and FAKE the same distribution of a face property
    # ("sharpness"; "none": off), in reweight_bins quantile bins (dfd.training.reweight)
    reweight: str = "none"
    reweight_bins: int = 20
    shuffle_buffer: int = 2048
    seed: int = 0
    strategy: str = "default"  # default | mirrored | multiworker (TF_CONFIG)
    loop: str = "auto"  # auto: model.fit for default/mirrored, custom loop for multiworker
    mixed_precision: bool = False
    jit_compile: bool = False
    patience: int | None = 5  # early stopping on val_auc; None = off
    phases: list[Phase] = field(default_factory=list)  # when given, replaces epochs/learning_rate
    # average the weights of every epoch end from this 1-based epoch on (SWA); the run's
    # model is the mean, unaveraged.keras the last epoch's (dfd.training.averaging). None: off
    average_from: int | None = None
    # sharpness-aware minimization: each step's gradient is taken at the weights moved this far
    # (L2) up the gradient (dfd.training.sharpness; the SBI paper's 0.05). 0: off
    sam_rho: float = 0.0
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
            self.augment = _section(AugmentConfig, self.augment, "augment")
        if isinstance(self.sbi, dict):
            self.sbi = _section(SBIConfig, self.sbi, "sbi")
        self.phases = [_section(Phase, p, "phases[]") if isinstance(p, dict) else p
                       for p in (self.phases or [])]
        _one_of("input_kind", self.input_kind, INPUT_KINDS)
        _one_of("loss", self.loss, LOSSES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("class_balance", self.class_balance, CLASS_BALANCE)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("loop", self.loop, LOOPS)
        _one_of("fakes", self.fakes, FAKES)
        _one_of("reweight", self.reweight, REWEIGHT)
        if self.reweight != "none" and self.fakes == "sbi":
            raise ValueError(f"reweight={self.reweight!r} balances the shards' REAL and FAKE "
                             "faces, but fakes='sbi' trains on no FAKE face of the shards")
        if int(self.reweight_bins) < 2:
            raise ValueError(f"reweight_bins must be >= 2, got {self.reweight_bins!r}")
        if not 0.0 <= float(self.sbi_ratio) <= 1.0:
            raise ValueError(f"sbi_ratio must be in [0, 1], got {self.sbi_ratio!r}")
        if self.fakes != "real" and self.input_kind != "frames":
            raise ValueError(f"fakes={self.fakes!r} (self-blended fakes) needs input_kind "
                             f"'frames', got {self.input_kind!r}")
        if (self.model not in MODELS and ":" not in self.model
                and self.model not in presets.builder_names()):
            raise ValueError(f"model {self.model!r} is not one of "
                             f"{sorted(set(MODELS) | set(presets.builder_names()))} "
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
        if not (math.isfinite(float(self.sam_rho)) and float(self.sam_rho) >= 0):
            raise ValueError(f"sam_rho must be a finite radius >= 0 (0: off), got {self.sam_rho!r}")
        if self.average_from is not None and (
                isinstance(self.average_from, bool) or int(self.average_from) != self.average_from
                or not 1 <= int(self.average_from) <= self.total_epochs):
            raise ValueError(f"average_from must be an epoch from 1 to {self.total_epochs} (the "
                             f"run's epochs), got {self.average_from!r}")

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
