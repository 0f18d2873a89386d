"""``train(config) -> RunResult``: the one trainer of the package, for every model.

It runs ``model.fit`` under the default or mirrored strategy and a custom ``strategy.run``
loop under the multi-worker strategy (see :mod:`dfd.training.strategy`), with the same
losses, metrics, checkpoints, history and resume behaviour on both paths.

Run directory (``config.run_dir``)::

    config.json        the TrainConfig (dfd.config.save_config)
    history.csv/.json  per-epoch loss and metrics (train and val_*)
    best.keras         the model of the best val AUC epoch
    last.keras         the model after the last epoch
    metrics.json       exact final val metrics of best and last model
    reweight.json      with ``reweight``: the fitted weights, overlap and cue ROC-AUCs
    preset.json        the model's preset (dfd.presets): inputs, and the face framing of the
                       training shards (``face_margin``, from their index.json) that dfd
                       detect then crops faces at; in ``extra`` what it trained on
                       (``train_sources``, ``fake_sources``, ``fakes``: dfd compare's
                       in-source / cross-source split)
    tensorboard/       TensorBoard logs
    unaveraged.keras   with ``average_from``: the last epoch's model (last.keras is the mean
                       of the epochs' weights, dfd.training.averaging)
    backup/ checkpoints/ phases/ average.npz   resume state (a re-run continues where a
                       killed run stopped)
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dfd.training.averaging as averaging
import dfd.training.custom_loop as custom_loop
import dfd.training.fit_path as fit_path
import dfd.training.history as history
import dfd.training.sampling as sampling
from dfd import export, framing, onednn_enabled, presets, schema
from dfd.config import config_from_dict, config_to_dict, json_safe, save_config
from dfd.training.config import TrainConfig
from dfd.training.data import count_labels, effective_counts, make_dataset, measure_weights
from dfd.training.evaluate import evaluate
from dfd.training.factories import build_model, set_backbone_trainable
from dfd.training.fit_path import BEST_MODEL, LAST_MODEL
from dfd.training.strategy import WorkerInfo, choose_loop, make_strategy, worker_info, write_dir

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REWEIGHT_FILE = "reweight.json"


@dataclass
class RunResult:
    """What a finished run produced (paths are in ``run_dir``)."""

    run_dir: Path
    loop: str  # "fit" or "custom"
    strategy: str
    replicas: int = 1  # replicas in sync (all workers' devices together)
    history: dict[str, list] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # {"best": {...}, "last": {...}}
    best_model: Path | None = None
    last_model: Path | None = None
    resumed_from_epoch: int | None = None  # epoch a resumed run continued at
    stopped_early: bool = False
    model: object = field(default=None, repr=False)  # the trained keras.Model, in memory

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("epoch", []))


def runtime_info() -> dict:
    """What ran the training, for config.json: TensorFlow and Keras versions, whether the
    CPU kernels were oneDNN's (their speed differs 2.5x, their round-off slightly), the
    physical devices TensorFlow saw (listed without starting its runtime, so that a
    multi-worker strategy can still be set up after) and the machine's CPU count."""
    import keras
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": onednn_enabled(),
        "devices": [d.name for d in tf.config.list_physical_devices()],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def _check_same_config(cfg: TrainConfig, run_dir: Path) -> None:
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text()).get("config", {})
    except json.JSONDecodeError:
        return
    try:  # options added since the run started read as their defaults, as in the run
        old = config_to_dict(config_from_dict(TrainConfig, old))
    except (TypeError, ValueError):
        pass  # an option this version does not know: compared as written, so it differs
    new = config_to_dict(cfg)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ValueError(
            f"run dir {run_dir} holds a run with a different config (differs in {diff}); "
            "a run dir resumes its own run only: choose a new --run-dir"
        )


def _steps_per_epoch(cfg: TrainConfig, counts, loop: str) -> int:
    """``steps_per_epoch``, or one pass over the training examples (batches rounded)."""
    if cfg.steps_per_epoch:
        return cfg.steps_per_epoch
    steps = counts.total / cfg.batch_size
    return max(1, math.floor(steps) if loop == "custom" else math.ceil(steps))


def _final_metrics(cfg: TrainConfig, model, val_ds, out_dir: Path) -> dict:
    import keras

    if val_ds is None:
        return {}
    out = {"monitor": "val_auc", "last": evaluate(model, val_ds, cfg.loss, cfg.validation_steps)}
    best_path = out_dir / BEST_MODEL
    if best_path.exists():
        try:
            best = keras.models.load_model(best_path, compile=False)
            out["best"] = evaluate(best, val_ds, cfg.loss, cfg.validation_steps)
        except Exception as err:  # a model whose custom layers are not registered
            log.warning("could not reload %s to evaluate it: %s", best_path, err)
            out["best_error"] = f"{type(err).__name__}: {err}"
    return out


def train(config: TrainConfig, model_fn: Callable | None = None,
          callbacks: Sequence = ()) -> RunResult:
    """Train ``config.model`` on ``config.train``; write everything into ``config.run_dir``.

    ``model_fn(config) -> keras.Model`` overrides the model named in the config (tests,
    notebooks). ``callbacks`` are extra Keras callbacks (the custom loop calls only their
    ``on_epoch_end(epoch, logs)``). Re-running with the same config and run dir resumes.
    """
    import keras

    cfg = config
    info = worker_info() if cfg.strategy == "multiworker" else WorkerInfo()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir = write_dir(run_dir, info)
    if info.is_chief:
        _check_same_config(cfg, run_dir)
    loop = choose_loop(cfg.strategy, cfg.loop)
    save_config(cfg, out_dir / CONFIG_FILE, training_loop=loop, runtime=runtime_info())
    keras.utils.set_random_seed(cfg.seed)
    previous_policy = keras.mixed_precision.global_policy()
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train(cfg, info, run_dir, out_dir, loop, model_fn, callbacks)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not info.is_chief:
            shutil.rmtree(out_dir, ignore_errors=True)


def _train(cfg, info, run_dir, out_dir, loop, model_fn, callbacks) -> RunResult:
    strategy = make_strategy(cfg.strategy)
    log.info("training %s: strategy %s (%d replicas), %s path, run dir %s", cfg.model,
             cfg.strategy, strategy.num_replicas_in_sync, loop, run_dir)
    # one cheap pass over the labels: class weights, sampling and the epoch length need it
    counts = count_labels(cfg.train, cfg.input_kind, cfg.max_faces_per_record, cfg.train_split)
    log.info("training data: %d REAL, %d FAKE %s", counts.real, counts.fake, cfg.input_kind)
    counts = effective_counts(cfg, counts)  # fakes="sbi": one self-blended FAKE per REAL
    steps = _steps_per_epoch(cfg, counts, loop)
    if cfg.fakes != "real":
        log.info("fakes=%s: %d REAL, %d FAKE examples, %d steps per epoch", cfg.fakes,
                 counts.real, counts.fake, steps)
    weights_counts = counts if cfg.class_balance == "weights" else None
    reweights = None
    if cfg.reweight != "none":  # one pass over the training faces: the weights' histograms
        reweights = measure_weights(cfg)
        if info.is_chief:
            (out_dir / REWEIGHT_FILE).write_text(
                json.dumps(json_safe(reweights.to_dict()), indent=2) + "\n")
    train_ds = make_dataset(cfg, True, weights_counts, drop_remainder=loop == "custom",
                            reweights=reweights)
    val_ds = make_dataset(cfg, False) if cfg.val else None
    if val_ds is None:
        log.warning("no validation shards: best model and early stopping follow train AUC")
    if loop == "custom":
        n_files = len(schema.resolve_shards(cfg.train))
        dist_train = custom_loop.distribute(strategy, train_ds.repeat(), n_files,
                                            info.num_workers)
    else:
        train_ds = train_ds.repeat()
    with strategy.scope():
        model = build_model(cfg, model_fn)

    phases_dir = out_dir / "phases"
    phases_dir.mkdir(parents=True, exist_ok=True)
    averager, first = None, []
    if cfg.average_from is not None:
        averager = averaging.WeightAverage(model, cfg.average_from,
                                           out_dir / averaging.AVERAGE_FILE,
                                           restore=run_dir / averaging.AVERAGE_FILE)
        first = [averaging.callback(averager)]  # before each epoch's backup
    start = 0
    resumed_from = None
    stopped_any = False
    for index, phase in enumerate(cfg.effective_phases()):
        done = run_dir / "phases" / f"phase{index}.done"
        weights = run_dir / "phases" / f"phase{index}.weights.h5"
        if done.exists() and weights.exists():
            log.info("phase %d already finished; loading its weights", index)
            model.load_weights(weights)
            resumed_from = start + phase.epochs
            start += phase.epochs
            continue
        set_backbone_trainable(model, phase.trainable_backbone, cfg.model)
        log.info("phase %d: epochs %d-%d, learning rate %g, backbone %s", index, start + 1,
                 start + phase.epochs, phase.learning_rate,
                 "trainable" if phase.trainable_backbone else "frozen")
        if loop == "custom":
            outcome = custom_loop.run_phase(
                model, cfg, index, phase, start, strategy, dist_train, val_ds,
                steps or 1, out_dir, info.is_chief, restore_dir=run_dir,
                extra_callbacks=callbacks, first_callbacks=first,
            )
        else:
            outcome = fit_path.run_phase(model, cfg, index, phase, start, strategy, train_ds, val_ds,
                                         steps, out_dir, extra_callbacks=callbacks,
                                         first_callbacks=first)
        if outcome.resumed_from_epoch is not None and resumed_from is None:
            resumed_from = outcome.resumed_from_epoch
        stopped_any = stopped_any or outcome.stopped_early
        model.save_weights(phases_dir / f"phase{index}.weights.h5")
        (phases_dir / f"phase{index}.done").write_text("done\n")
        start += phase.epochs

    if averager is not None:
        model.save(out_dir / averaging.UNAVERAGED_MODEL)
        ran = history.read_history(out_dir / history.HISTORY_CSV)  # 0-based epochs
        averager.apply(epochs_run=[row["epoch"] + 1 for row in ran])
    model.save(out_dir / LAST_MODEL)
    for scratch in ("backup", "checkpoints"):  # resume state of finished phases
        shutil.rmtree(out_dir / scratch, ignore_errors=True)
    metrics = _final_metrics(cfg, model, val_ds, out_dir)
    hist = history.write_history_json(out_dir) if info.is_chief else {}
    if info.is_chief:
        (out_dir / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
        _write_preset(cfg, model, out_dir)
    log.info("run finished: %s", json.dumps(json_safe(metrics.get("best", metrics.get("last")))))
    return RunResult(
        run_dir=run_dir, loop=loop, strategy=cfg.strategy,
        replicas=strategy.num_replicas_in_sync, history=hist, metrics=metrics,
        best_model=(run_dir / BEST_MODEL) if (run_dir / BEST_MODEL).exists() else None,
        last_model=run_dir / LAST_MODEL, resumed_from_epoch=resumed_from,
        stopped_early=stopped_any, model=model,
    )


def _write_preset(cfg: TrainConfig, model, out_dir: Path) -> None:
    try:
        specs = export.default_input_spec(model)
    except ValueError as err:
        log.warning("no %s written: %s", presets.PRESET_FILE, err)
        return
    try:
        record = sampling.training_record(cfg)
    except Exception as err:  # noqa: BLE001 - the run is done: a missing record is no failure
        log.warning("what the run trained on is not recorded: %s", err)
        record = {}
    preset = export.model_preset(model, specs, source=f"dfd train ({cfg.model})",
                                 face_margin=framing.shards_face_margin(cfg.train),
                                 face_centre=framing.shards_face_centre(cfg.train),
                                 trained_as=cfg.model, **record)
    if ":" not in cfg.model:
        preset = preset.replace(architecture=cfg.model)
    presets.write_preset(preset, out_dir)
