"""Sharpness-aware minimization (``sam_rho``, dfd.training.sharpness): the gradient is taken at
the weights moved ``rho`` up the gradient, applied at the weights themselves, on both training
loops, and a run's saved model is a plain Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_training import shards, small_config

__all__ = ["shards"]  # the module-scoped fixture, shared

RHO = 0.5  # large, so that the moved gradient is far from the plain one


def _model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh")(x)
    h = keras.layers.BatchNormalization()(h)
    out = keras.layers.Dense(1, activation="sigmoid")(h)
    return keras.Model(x, out)


def _data(n=16):
    rng = np.random.default_rng(1)
    return (rng.normal(size=(n, 6)).astype("float32"),
            rng.integers(0, 2, size=(n, 1)).astype("float32"))


def _loss(model, x, y):
    import keras

    return keras.losses.BinaryCrossentropy()(y, model(x, training=True))


def _grads(model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = _loss(model, x, y)
    return tape.gradient(loss, model.trainable_variables)


def _moved_by_hand(model, x, y, grads, rho):
    """The gradient at w + rho g / ||g||, by assigning the weights (then restoring them)."""
    import tensorflow as tf

    w = [v.numpy() for v in model.trainable_variables]
    norm = float(tf.linalg.global_norm(grads))
    for v, g in zip(model.trainable_variables, grads):
        v.assign(v.numpy() + rho * g.numpy() / norm)
    moved = [g.numpy() for g in _grads(model, x, y)]
    for v, old in zip(model.trainable_variables, w):
        v.assign(old)
    return moved


def test_gradients_are_taken_at_the_moved_weights():
    from dfd.training.sharpness import sharpness_gradients

    model, (x, y) = _model(), _data()
    grads = _grads(model, x, y)
    expected = _moved_by_hand(model, x, y, grads, RHO)
    before = [v.numpy().copy() for v in model.weights]  # BN statistics included
    got = sharpness_gradients(model.trainable_variables, grads, RHO,
                              lambda: _loss(model, x, y))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-6)
    assert any(np.abs(a.numpy() - g.numpy()).max() > 1e-3 for a, g in zip(got, grads))
    for v, old in zip(model.weights, before):  # stateless: nothing was assigned
        np.testing.assert_array_equal(v.numpy(), old)


def test_rho_zero_and_non_finite_gradients_do_not_move_the_weights():
    import tensorflow as tf

    from dfd.training.sharpness import sharpness_gradients

    model, (x, y) = _model(), _data()
    grads = _grads(model, x, y)
    plain = [g.numpy() for g in grads]
    bad = [tf.fill(tf.shape(g), np.inf) for g in grads]
    for given, rho in ((grads, 0.0), (bad, RHO)):
        got = sharpness_gradients(model.trainable_variables, given, rho,
                                  lambda: _loss(model, x, y))
        for a, b in zip(got, plain):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-7)
    # a variable without a gradient keeps None
    got = sharpness_gradients(model.trainable_variables, [None, *grads[1:]], RHO,
                              lambda: _loss(model, x, y))
    assert got[0] is None and all(g is not None for g in got[1:])


def test_fit_step_applies_the_moved_gradient_at_the_weights():
    import keras

    from dfd.training.sharpness import fit_step_installed

    lr = 0.1
    x, y = _data()
    reference = _model()
    w0 = [v.numpy() for v in reference.trainable_variables]
    grads = _grads(reference, x, y)
    moved = _moved_by_hand(reference, x, y, grads, RHO)
    first_loss = float(_loss(reference, x, y))

    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="binary_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=0, verbose=0)  # Keras' own step, compiled
    with fit_step_installed(model, RHO):
        hist = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for v, w, g in zip(model.trainable_variables, w0, moved):
        np.testing.assert_allclose(v.numpy(), w - lr * g, rtol=1e-4, atol=1e-6)
    assert hist.history["loss"][0] == pytest.approx(first_loss, rel=1e-4)  # the first pass's
    # Keras' own step afterwards: a later fit compiles it again (the SAM step is not reused)
    assert "train_step" not in vars(model) and model.train_function is None
    w1 = [v.numpy() for v in model.trainable_variables]
    plain = [g.numpy() for g in _grads(model, x, y)]
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for v, w, g in zip(model.trainable_variables, w1, plain):
        np.testing.assert_allclose(v.numpy(), w - lr * g, rtol=1e-4, atol=1e-6)


def test_losses_added_in_the_call_count_in_the_moved_pass():
    """An activity regularizer's loss is part of the second pass's loss too: with rho 0 the
    SAM step is Keras' own step exactly."""
    import keras

    from dfd.training.sharpness import fit_train_step

    x, y = _data()
    trained = []
    for sam in (False, True):
        keras.utils.set_random_seed(0)
        inp = keras.Input((6,))
        h = keras.layers.Dense(5, activation="tanh", activity_regularizer="l2")(inp)
        model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
        if sam:
            model.train_step = fit_train_step(model, 0.0)
        model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
        trained.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_moved_pass_draws_its_own_dropout_masks():
    """Its masks are neither the first pass's nor the next step's, and the seeds advance once
    per step (by the first pass)."""
    import keras
    import tensorflow as tf

    from dfd.training.sharpness import seed_states, sharpness_gradients

    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    out = keras.layers.Dense(1, use_bias=False)(keras.layers.Dropout(0.5)(inp))
    model = keras.Model(inp, out)
    x = np.ones((1, 64), "float32")
    seeds = seed_states(model)
    assert len(seeds) == 1

    def loss():
        return tf.reduce_sum(model(x, training=True))

    def first_pass():  # the kernel's gradient is the dropout mask (scaled)
        with tf.GradientTape() as tape:
            value = loss()
        return tape.gradient(value, model.trainable_variables)

    g1 = first_pass()
    state = seeds[0].numpy().copy()
    g2 = sharpness_gradients(model.trainable_variables, g1, 0.0, loss, seeds)
    np.testing.assert_array_equal(seeds[0].numpy(), state)  # not advanced by the moved pass
    g3 = first_pass()  # the next step's
    masks = [g[0].numpy().ravel() != 0 for g in (g1, g2, g3)]
    assert 10 < masks[1].sum() < 54  # a mask was drawn
    assert (masks[1] != masks[0]).any() and (masks[1] != masks[2]).any()


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_both_loops_train_with_it(tmp_path, shards, loop, monkeypatch):
    import keras

    import dfd.training.custom_loop as custom_loop
    import dfd.training.sharpness as sharpness
    from dfd.training import train
    from dfd.training.history import read_history

    calls = []
    real = sharpness.sharpness_gradients

    def counted(*args, **kwargs):
        calls.append(1)  # once per trace of the step
        return real(*args, **kwargs)

    monkeypatch.setattr(sharpness, "sharpness_gradients", counted)
    monkeypatch.setattr(custom_loop, "sharpness_gradients", counted)
    cfg = small_config(tmp_path, shards, epochs=2, loop=loop, sam_rho=0.05)
    res = train(cfg)
    assert calls, "the sharpness-aware step was not used"
    rows = read_history(Path(cfg.run_dir) / "history.csv")
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) and float(r["loss"]) > 0
                                  for r in rows)
    assert "train_step" not in vars(res.model)  # the model keeps Keras' own step
    assert res.model.train_function is None or loop == "custom"
    plain = keras.saving.load_model(Path(cfg.run_dir) / "last.keras", compile=False)
    assert type(plain).__name__ == "Functional"  # a plain model: loads without this package


def test_fit_step_under_mixed_precision():
    import keras

    from dfd.training.sharpness import fit_train_step

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        x = keras.Input((6,))
        h = keras.layers.BatchNormalization()(keras.layers.Dense(5, activation="tanh")(x))
        model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid", dtype="float32")(h))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        model.train_step = fit_train_step(model, 0.05)
        xs, ys = _data(64)
        losses = model.fit(xs, ys, epochs=3, verbose=0).history["loss"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
