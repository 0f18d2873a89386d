"""One training phase as a custom loop with ``strategy.run`` (multi-worker path).

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy``; this loop does what the
fit path does, with the same outputs:

* the same per-example losses (averaged over the GLOBAL batch), class weights and
  optimizer (Keras' optimizer all-reduces the gradients across replicas), and the same
  sharpness-aware step with ``sam_rho`` (:mod:`dfd.training.sharpness`);
* per-epoch history in ``history.csv`` (train loss/metrics from this worker's batches;
  val metrics exact, each worker scoring the whole validation set);
* ``best.keras`` (by val AUC) and ``last.keras``; early stopping on val AUC;
* resumable: a ``tf.train.CheckpointManager`` keeps model, optimizer, epoch and the
  early-stopping state after every epoch; a re-run restores it and continues;
* TensorBoard scalars.

Only the chief's files are kept: other workers write into scratch directories, since
saving runs collectives that every worker must join.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

import dfd.training.history as history
from dfd.training.config import Phase, TrainConfig
from dfd.training.evaluate import binary_metrics, evaluate
from dfd.training.factories import make_optimizer, per_example_loss, tensorboard_available
from dfd.training.fit_path import BEST_MODEL, LAST_MODEL, PhaseOutcome
from dfd.training.sharpness import seed_states, sharpness_gradients

log = logging.getLogger(__name__)


def distribute(strategy, ds, num_files: int, num_workers: int):
    """Distribute a globally batched dataset, sharding by file when there are enough."""
    import tensorflow as tf

    opts = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    opts.experimental_distribute.auto_shard_policy = (
        policy.FILE if num_files >= num_workers > 1 else policy.DATA
    )
    return strategy.experimental_distribute_dataset(ds.with_options(opts))


def run_phase(model, cfg: TrainConfig, index: int, phase: Phase, start_epoch: int,
              strategy, dist_train, val_ds, steps_per_epoch: int, out_dir: Path,
              is_chief: bool, restore_dir: Path | None = None, extra_callbacks=(),
              first_callbacks=()):
    """Train epochs ``start_epoch .. start + phase.epochs`` of ``phase`` under ``strategy``.

    ``out_dir`` is where this worker writes; ``restore_dir`` the run dir whose checkpoints and
    history a resumed run continues from (the chief's, on a shared file system).
    """
    import keras
    import tensorflow as tf

    with strategy.scope():
        optimizer = make_optimizer(cfg.optimizer, phase.learning_rate)
        if cfg.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    # loop state: plain (not mirrored) variables, the same on every worker
    epoch_var = tf.Variable(start_epoch, dtype=tf.int64, trainable=False)
    best_var = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
    wait_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var,
                               best=best_var, wait=wait_var)
    sub = Path("checkpoints") / f"phase{index}"
    manager = tf.train.CheckpointManager(ckpt, str(out_dir / sub), max_to_keep=2)
    restore_dir = Path(restore_dir or out_dir)
    latest = tf.train.latest_checkpoint(str(restore_dir / sub))
    resumed = None
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        resumed = int(epoch_var.numpy())
        log.info("phase %d resumes at epoch %d from %s", index, resumed + 1, latest)
    rows = history.read_history(restore_dir / history.HISTORY_CSV)
    monitor = "val_auc" if val_ds is not None else "auc"
    global_best, _ = history.best_so_far(rows, monitor)
    global_best = -math.inf if global_best is None else global_best
    global_batch = cfg.batch_size
    loss_name = cfg.loss
    trainable = model.trainable_variables
    seeds = seed_states(model)

    def replica_step(batch):
        x, y, w = batch

        def loss_at_current_weights():
            p = tf.reshape(tf.cast(model(x, training=True), tf.float32), [-1])
            per = per_example_loss(loss_name, y, p) * w
            loss = tf.nn.compute_average_loss(per, global_batch_size=global_batch)
            return p, loss, (optimizer.scale_loss(loss) if cfg.mixed_precision else loss)

        with tf.GradientTape() as tape:
            p, loss, scaled = loss_at_current_weights()
        grads = tape.gradient(scaled, trainable)
        if cfg.sam_rho:
            grads = sharpness_gradients(trainable, grads, cfg.sam_rho,
                                        lambda: loss_at_current_weights()[2], seeds)
        optimizer.apply_gradients(zip(grads, trainable))
        return loss, y, p

    @tf.function(jit_compile=cfg.jit_compile or None)
    def train_step(iterator):
        loss, y, p = strategy.run(replica_step, args=(next(iterator),))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), y, p

    writer = tf.summary.create_file_writer(str(out_dir / "tensorboard" / "custom")) \
        if cfg.tensorboard and tensorboard_available() else None
    iterator = iter(dist_train)
    end_epoch = start_epoch + phase.epochs
    stopped = False
    while int(epoch_var.numpy()) < end_epoch:
        epoch = int(epoch_var.numpy())
        losses, ys, ps = [], [], []
        for _ in range(steps_per_epoch):
            loss, y, p = train_step(iterator)
            losses.append(float(loss))
            ys.extend(t.numpy() for t in strategy.experimental_local_results(y))
            ps.extend(t.numpy() for t in strategy.experimental_local_results(p))
        train_m = binary_metrics(np.concatenate(ys), np.concatenate(ps), cfg.loss)
        logs = {k: train_m[k] for k in ("auc", "accuracy", "precision", "recall")}
        logs["loss"] = float(np.mean(losses))
        if val_ds is not None:
            val_m = evaluate(model, val_ds, cfg.loss, cfg.validation_steps)
            logs.update({f"val_{k}": val_m[k]
                         for k in ("auc", "accuracy", "precision", "recall", "loss")})
        for cb in first_callbacks:  # before this epoch's checkpoint (the weight average)
            cb.on_epoch_end(epoch, logs)
        current = logs.get(monitor, math.nan)
        log.info("epoch %d/%d: %s", epoch + 1, end_epoch,
                 " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))
        improved_phase = not math.isnan(current) and current > float(best_var.numpy())
        if improved_phase:
            best_var.assign(current)
            wait_var.assign(0)
        else:
            wait_var.assign_add(1)
        if not math.isnan(current) and current > global_best:
            global_best = current
            model.save(out_dir / BEST_MODEL)
        model.save(out_dir / LAST_MODEL)
        if is_chief:
            history.append_row(out_dir / history.HISTORY_CSV, epoch, logs)
        if writer is not None:
            with writer.as_default():
                for k, v in logs.items():
                    tf.summary.scalar(k, v, step=epoch)
            writer.flush()
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        for cb in extra_callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(epoch, logs)
        if cfg.patience and int(wait_var.numpy()) >= cfg.patience:
            log.info("early stopping at epoch %d: %s did not improve for %d epochs",
                     epoch + 1, monitor, cfg.patience)
            stopped = True
            break
    return PhaseOutcome(resumed, stopped)
