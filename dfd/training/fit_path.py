"""One training phase with ``model.fit`` and Keras callbacks (default / mirrored strategy).

Callbacks, in the order they run at each epoch end: ``BackupAndRestore`` (resume after a
crash), ``CSVLogger`` (history.csv), ``ModelCheckpoint`` best (by the monitored metric) and
last, ``EarlyStopping`` (seeded from the history, so a resumed run keeps its patience count),
``TensorBoard``, then any extra callbacks of the caller. With ``sam_rho`` the fit runs
:mod:`dfd.training.sharpness`' step instead of Keras' own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import dfd.training.history as history
import dfd.training.sharpness as sharpness
from dfd.training.config import Phase, TrainConfig
from dfd.training.factories import (
    compile_metrics,
    make_loss,
    make_optimizer,
    tensorboard_available,
)

log = logging.getLogger(__name__)

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"


@dataclass
class PhaseOutcome:
    resumed_from_epoch: int | None  # absolute epoch the phase resumed at, None when fresh
    stopped_early: bool


def _early_stopping(monitor: str, patience: int, rows: list[dict], since_epoch: int):
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping that continues the best / wait count of the epochs already run."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            best, wait = history.best_so_far(rows, monitor, since_epoch)
            if best is not None:
                self.best, self.wait = best, wait

    return ResumableEarlyStopping(monitor=monitor, mode="max", patience=patience, verbose=1)


def backup_epoch(backup_dir: Path) -> int | None:
    """The epoch a ``BackupAndRestore`` backup will resume at (None without a backup)."""
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return None
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError):
        return None


def run_phase(model, cfg: TrainConfig, index: int, phase: Phase, start_epoch: int,
              strategy, train_ds, val_ds, steps_per_epoch, out_dir: Path, extra_callbacks=(),
              first_callbacks=()):
    """Compile ``model`` for ``phase`` and fit epochs ``start_epoch .. start + phase.epochs``.

    ``first_callbacks`` see each epoch's end before its backup (the weight average: a run
    killed in between re-runs the epoch, which the average then already holds), the
    ``extra_callbacks`` after everything else."""
    import keras

    with strategy.scope():  # optimizer and metric variables belong to the strategy
        model.compile(
            optimizer=make_optimizer(cfg.optimizer, phase.learning_rate),
            loss=make_loss(cfg.loss),
            metrics=compile_metrics(),
            jit_compile=cfg.jit_compile,
        )
    monitor = "val_auc" if val_ds is not None else "auc"
    rows = history.read_history(out_dir / history.HISTORY_CSV)
    best, _ = history.best_so_far(rows, monitor)
    backup_dir = out_dir / "backup" / f"phase{index}"
    resumed = backup_epoch(backup_dir)
    if resumed is not None:
        log.info("phase %d resumes at epoch %d from %s", index, resumed + 1, backup_dir)
    callbacks = [
        *first_callbacks,
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.CSVLogger(str(out_dir / history.HISTORY_CSV), append=True),
        keras.callbacks.ModelCheckpoint(
            str(out_dir / BEST_MODEL), monitor=monitor, mode="max", save_best_only=True,
            initial_value_threshold=best, verbose=0,
        ),
        keras.callbacks.ModelCheckpoint(str(out_dir / LAST_MODEL), save_best_only=False),
    ]
    stopper = None
    if cfg.patience:
        stopper = _early_stopping(monitor, cfg.patience, rows, start_epoch)
        callbacks.append(stopper)
    if cfg.tensorboard and tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "tensorboard")))
    callbacks.extend(extra_callbacks)
    model._initial_epoch = None  # a previous phase's BackupAndRestore may have set it
    with sharpness.fit_step_installed(model, cfg.sam_rho):
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=start_epoch + phase.epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=cfg.validation_steps,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=2 if log.isEnabledFor(logging.INFO) else 0,
        )
    return PhaseOutcome(resumed, bool(stopper is not None and stopper.stopped_epoch > 0))
