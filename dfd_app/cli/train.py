"""``dfd train``: train a MesoNet, a keras.applications (frame_tf) or temporal model from face shards.

Give a config file (``--config cfg.json``, as written by a previous run or by hand), flags,
or both (flags override the file). Re-running with the same ``--run-dir`` resumes.
"""

from __future__ import annotations

import argparse
import json
import logging

from dfd.config import config_from_dict, config_to_dict, load_config
from dfd.training import train
from dfd.training.config import (
    CLASS_BALANCE,
    FAKES,
    INPUT_KINDS,
    LOOPS,
    LOSSES,
    OPTIMIZERS,
    REWEIGHT,
    STRATEGIES,
    TrainConfig,
)

log = logging.getLogger(__name__)

# flag -> TrainConfig field, for flags that map one to one
_SIMPLE = {
    "model": str, "run_dir": str, "input_kind": str, "clip_len": int, "face_size": int,
    "max_faces_per_record": int, "batch_size": int, "epochs": int, "steps_per_epoch": int,
    "validation_steps": int, "learning_rate": float, "optimizer": str, "loss": str,
    "class_balance": str, "seed": int, "strategy": str, "loop": str, "patience": int,
    "train_split": str, "val_split": str, "mix": str, "fakes": str, "sbi_ratio": float,
    "reweight": str, "reweight_bins": int, "average_from": int, "sam_rho": float,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TrainConfig JSON (a run's config.json works too)")
    parser.add_argument("--model", help="meso4 | mesoinception4 | efficientnetb0 | xception | temporal | "
                        "package.module:builder")
    parser.add_argument("--model-kwargs", help='JSON object of model arguments, e.g. \'{"dropout": 0.5}\'')
    parser.add_argument("--train", nargs="+", help="training shard directories or files")
    parser.add_argument("--val", nargs="+", help="validation shard directories or files")
    parser.add_argument("--train-split", help="use only records of this manifest split "
                        "(`dfd split`) from --train, e.g. train")
    parser.add_argument("--val-split", help="use only records of this split from --val, e.g. val")
    parser.add_argument("--mix", help="share of each source in every batch, e.g. "
                        "dfdc=0.5,ffpp=0.5 (names: the shards' source, or a unique part of it)")
    parser.add_argument("--paired", action=argparse.BooleanOptionalAction, default=None,
                        help="batches of (fake, its real original) pairs")
    parser.add_argument("--fakes", choices=FAKES,
                        help="FAKE examples: the shards' own (real, default), self-blended fakes "
                        "made from REAL faces only (sbi), or both mixed (see --sbi-ratio)")
    parser.add_argument("--sbi-ratio", type=float,
                        help="with --fakes both: share of FAKE examples that are self-blended")
    parser.add_argument("--reweight", choices=REWEIGHT,
                        help="loss weights that give REAL and FAKE the same distribution of a "
                        "face property (sharpness), so it cannot be learned as a cue; default none")
    parser.add_argument("--reweight-bins", type=int,
                        help="with --reweight: quantile bins of the property (default 20)")
    parser.add_argument("-o", "--out", "--run-dir", dest="run_dir",
                        help="run directory: where the run writes (and resumes from); "
                             "default runs/train")
    parser.add_argument("--input-kind", choices=INPUT_KINDS,
                        help="frames: one face per example; clips: T faces + mask (temporal "
                             "models); default frames")
    parser.add_argument("--clip-len", type=int, help="faces per clip for --input-kind clips "
                        "(default 16)")
    parser.add_argument("--face-size", type=int, help="face side in pixels the model takes "
                        "(default 256)")
    parser.add_argument("--max-faces-per-record", type=int,
                        help="frames: use at most this many faces per video (default: all)")
    parser.add_argument("--batch-size", type=int, help="global batch size, split over replicas "
                        "(default 32)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 10)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="batches per epoch (default: one pass over the training data)")
    parser.add_argument("--validation-steps", type=int,
                        help="validation batches per epoch (default: the whole --val data)")
    parser.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate",
                        help="learning rate (default 1e-3)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default adam)")
    parser.add_argument("--loss", choices=LOSSES,
                        help="mse (as the original MesoNet) or bce (default mse)")
    parser.add_argument("--class-balance", choices=CLASS_BALANCE,
                        help="none, weights (class weights from the training labels) or "
                             "sampling (50/50 batches); default weights")
    parser.add_argument("--seed", type=int, help="seed of shuffling, sampling and "
                        "initialisation (default 0)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="default (one device), mirrored (all local GPUs) or multiworker "
                             "(several machines: TF_CONFIG, or Slurm's srun); default default")
    parser.add_argument("--loop", choices=LOOPS,
                        help="auto (model.fit, the custom loop under multiworker), fit or "
                             "custom; default auto")
    parser.add_argument("--patience", type=int,
                        help="early-stopping patience on val AUC, in epochs (default 5)")
    parser.add_argument("--no-early-stopping", action="store_true",
                        help="train every epoch (same as patience None)")
    parser.add_argument("--no-augment", action="store_true", help="switch all augmentations off")
    parser.add_argument("--augment", help='JSON object of AugmentConfig fields, e.g. \'{"jpeg": false}\'')
    parser.add_argument("--sbi", help="JSON object of SBIConfig fields (how self-blended fakes are "
                        'made), e.g. \'{"downscale_prob": 0.5}\'')
    parser.add_argument("--phases", help='JSON list, e.g. \'[{"epochs": 3, "learning_rate": 1e-3, '
                        '"trainable_backbone": false}, {"epochs": 5, "learning_rate": 1e-4}]\'')
    parser.add_argument("--average-from", type=int, metavar="EPOCH",
                        help="average the weights of every epoch end from this epoch (1-based) "
                        "on: the run's model is the mean (stochastic weight averaging), "
                        "unaveraged.keras the last epoch's; default off")
    parser.add_argument("--sam-rho", type=float, metavar="RHO",
                        help="sharpness-aware minimization: take each step's gradient at the "
                        "weights moved RHO (L2) up the gradient, at twice the cost per step "
                        "(the self-blended-image paper used 0.05); default 0, off")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed_float16 compute (GPUs); default off")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA-compile the training step; default off")
    parser.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                        help="write TensorBoard logs into the run directory; default on")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and exit without training")


def _json_arg(value: str, flag: str, kind: type = dict):
    """``value`` parsed as JSON, which must be a ``kind`` (an object or a list): a ValueError
    naming ``flag`` and the text otherwise."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err}): {value!r}") from None
    if not isinstance(parsed, kind):
        want = "object {...}" if kind is dict else "list [...]"
        raise ValueError(f"{flag} must be a JSON {want}, got {value!r}")
    return parsed


def config_from_args(args):
    """The TrainConfig of ``--config`` (if any) with the given flags applied on top."""

    data = config_to_dict(load_config(TrainConfig, args.config)) if args.config else {}
    for name in _SIMPLE:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    for name in ("train", "val"):
        if getattr(args, name):
            data[name] = list(getattr(args, name))
    if args.model_kwargs:
        data["model_kwargs"] = _json_arg(args.model_kwargs, "--model-kwargs")
    if args.phases:
        data["phases"] = _json_arg(args.phases, "--phases", list)
    augment = dict(data.get("augment") or {})
    if args.augment:
        augment.update(_json_arg(args.augment, "--augment"))
    if args.no_augment:
        augment["enabled"] = False
    if augment:
        data["augment"] = augment
    if args.sbi:
        data["sbi"] = {**(data.get("sbi") or {}), **_json_arg(args.sbi, "--sbi")}
    if args.no_early_stopping:
        data["patience"] = None
    for name in ("mixed_precision", "jit_compile", "tensorboard", "paired"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    cfg = config_from_dict(TrainConfig, data)
    if not cfg.train:
        raise ValueError("no training shards: give --train DIR (or 'train' in --config)")
    return cfg


def run(args) -> int:

    try:
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    if args.dry_run:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0

    result = train(cfg)
    best = result.metrics.get("best") or result.metrics.get("last") or {}
    print(f"run dir      {result.run_dir}")
    print(f"path         {result.loop} ({result.strategy}, {result.replicas} replicas)")
    print(f"epochs run   {result.epochs_run}" + ("  (stopped early)" if result.stopped_early else ""))
    for key in ("auc", "accuracy", "precision", "recall", "loss"):
        if key in best:
            print(f"val {key:<10}{best[key]:.4f}")
    return 0
