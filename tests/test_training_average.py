"""Weight averaging over a run's last epochs (``average_from``, dfd.training.averaging): the
run's model is the mean of the epochs' weights, ``unaveraged.keras`` the last epoch's, on both
training loops and across a killed and resumed run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_training import (
    InterruptAt,
    _Interrupt,
    _keras_interrupt,
    shards,
    small_config,
    tiny_builder,
)

__all__ = ["shards"]  # the module-scoped fixture, shared


class Watch:
    """Extra callback (both loops): the model's weights at every epoch end, by 0-based epoch."""

    def __init__(self):
        self.model = None
        self.seen: dict[int, list[np.ndarray]] = {}

    def builder(self, cfg):
        self.model = tiny_builder(cfg)
        return self.model

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch] = [w.copy() for w in self.model.get_weights()]

    def __getattr__(self, name):  # every other Keras callback hook: do nothing
        if name.startswith("on_") or name.startswith("set_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def _weights(path):
    import keras

    return keras.models.load_model(path, compile=False).get_weights()


def _assert_mean(got, epochs, seen):
    for i, w in enumerate(got):
        np.testing.assert_allclose(w, np.mean([seen[e][i] for e in epochs], axis=0),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_model_is_the_mean_of_the_epochs_weights(tmp_path, shards, loop):
    from dfd.training import train

    watch = Watch()
    cfg = small_config(tmp_path, shards, epochs=3, average_from=2, loop=loop)
    res = train(cfg, model_fn=watch.builder, callbacks=[watch])
    run = Path(cfg.run_dir)
    assert sorted(watch.seen) == [0, 1, 2]
    assert any(not np.array_equal(a, b) for a, b in zip(watch.seen[1][0:1], watch.seen[2][0:1]))
    _assert_mean(_weights(run / "last.keras"), [1, 2], watch.seen)  # epochs 2 and 3 (1-based)
    _assert_mean(res.model.get_weights(), [1, 2], watch.seen)
    for a, b in zip(_weights(run / "unaveraged.keras"), watch.seen[2]):
        np.testing.assert_array_equal(a, b)
    with np.load(run / "average.npz") as data:
        assert list(data["epochs"]) == [2, 3]
    # the run's metrics are the mean's, not the last epoch's
    import keras

    from dfd.training.data import make_dataset
    from dfd.training.evaluate import evaluate

    val = make_dataset(cfg, False)
    for name, same in (("last.keras", True), ("unaveraged.keras", False)):
        model = keras.saving.load_model(run / name, compile=False)
        got = evaluate(model, val, cfg.loss, cfg.validation_steps)["loss"]
        assert (got == pytest.approx(res.metrics["last"]["loss"], rel=1e-5)) == same, name


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_killed_run_keeps_its_average(tmp_path, shards, loop):
    from dfd.training import train

    watch = Watch()
    cfg = small_config(tmp_path, shards, epochs=4, average_from=2, loop=loop)
    with pytest.raises(_Interrupt):  # killed after epoch 3 (1-based): the mean holds 2 and 3
        train(cfg, model_fn=watch.builder, callbacks=[watch, InterruptAt(2)] if loop == "custom"
              else [watch, _keras_interrupt(2)])
    res = train(cfg, model_fn=watch.builder, callbacks=[watch])
    assert res.resumed_from_epoch == 3 and sorted(watch.seen) == [0, 1, 2, 3]
    _assert_mean(_weights(Path(cfg.run_dir) / "last.keras"), [1, 2, 3], watch.seen)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_killed_right_after_the_backup_keeps_the_epoch(tmp_path, shards, loop, monkeypatch,
                                                      caplog):
    """Killed after the last epoch's backup was written: the re-run has no epoch left to
    train, and the mean must still hold that epoch (it is updated before the backup)."""
    import keras
    import tensorflow as tf

    from dfd.training import train

    watch = Watch()
    cfg = small_config(tmp_path, shards, epochs=3, average_from=2, loop=loop)
    if loop == "fit":
        real = keras.callbacks.BackupAndRestore.on_epoch_end

        def backed_up_then_killed(self, epoch, logs=None):
            real(self, epoch, logs)
            if epoch == 2:
                raise _Interrupt("killed after the backup of epoch 3")

        monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end",
                            backed_up_then_killed)
    else:
        real = tf.train.CheckpointManager.save

        def backed_up_then_killed(self, *args, checkpoint_number=None, **kwargs):
            out = real(self, *args, checkpoint_number=checkpoint_number, **kwargs)
            if checkpoint_number == 3:
                raise _Interrupt("killed after the checkpoint of epoch 3")
            return out

        monkeypatch.setattr(tf.train.CheckpointManager, "save", backed_up_then_killed)
    with pytest.raises(_Interrupt):
        train(cfg, model_fn=watch.builder, callbacks=[watch])
    monkeypatch.undo()
    last = [w.copy() for w in watch.model.get_weights()]  # epoch 3's, as the backup holds it
    seen = {1: watch.seen[1], 2: last}
    res = train(cfg, model_fn=watch.builder)
    with np.load(Path(cfg.run_dir) / "average.npz") as data:
        assert list(data["epochs"]) == [2, 3]
    _assert_mean(res.model.get_weights(), [1, 2], seen)
    assert "not in it" not in caplog.text


def test_an_epoch_missing_from_the_mean_is_logged(tmp_path, caplog):
    from dfd.training.averaging import WeightAverage
    from tests.test_training import tiny_model

    avg = WeightAverage(tiny_model(), 2, tmp_path / "average.npz")
    for epoch in (1, 3):  # 0-based: epochs 2 and 4 (1-based); 3 was lost
        avg.on_epoch_end(epoch)
    assert avg.apply(epochs_run=[1, 2, 3, 4])
    assert "epochs [3] were trained but are not in it" in caplog.text
    # a worker writing elsewhere (a non-chief's scratch folder) resumes from the run dir's
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    again = WeightAverage(tiny_model(), 2, scratch / "average.npz",
                          restore=tmp_path / "average.npz")
    assert again.epochs == [2, 4] and not (scratch / "average.npz").exists()


def test_an_unreadable_or_foreign_average_starts_again(tmp_path, caplog):
    import keras

    from dfd.training.averaging import WeightAverage
    from tests.test_training import tiny_model

    model = tiny_model()
    path = tmp_path / "average.npz"
    path.write_bytes(b"not a zip")
    avg = WeightAverage(model, 1, path)
    assert avg.mean is None and "unreadable" in caplog.text
    avg.on_epoch_end(0)  # writes a readable mean of this model
    assert WeightAverage(tiny_model(), 1, path).epochs == [1]
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    avg = WeightAverage(other, 1, path)
    assert avg.mean is None and "another model" in caplog.text
    assert not avg.apply()  # nothing averaged: the model is left as it is
    with pytest.raises(ValueError, match="average_from"):
        WeightAverage(model, 0, path)
