"""Sharpness-aware minimization (SAM; Foret et al., ICLR 2021): ``TrainConfig.sam_rho``.

Each step takes the gradient ``g`` at the weights ``w``, moves to the worst point of a ball of
radius ``rho`` around them to first order, ``w + rho * g / ||g||`` (the norm over every
trainable weight), and applies the loss's gradient THERE to ``w`` with the run's optimizer. The
run is pulled towards flat minima, where the loss stays low when the weights move; the
self-blended-image detector was trained this way (Shiohara and Yamasaki, CVPR 2022: SAM over
SGD, ``rho`` 0.05).

It costs a second forward and backward pass per step. The second pass runs inside a
``keras.StatelessScope`` with the moved weights as tensors, so no weight is assigned: it works
on one device and under every distribution strategy, and batch-norm statistics are updated once
per step (by the first pass). Losses a layer adds in its call (activity regularizers) are
the moved pass's own. Random layers (dropout) draw their masks in the second pass from their
seeds shifted by one, so that its masks are neither the first pass's nor the next step's,
and the seeds advance once per step. Under a strategy each replica moves by its own batch's gradient
(the paper's m-sharpness, m = the replica's batch). The loss and metrics a run logs are the
first pass's, at ``w``. A non-finite gradient (a mixed-precision overflow) moves nothing; the
loss-scale optimizer then skips the step as usual.

Both training loops use :func:`sharpness_gradients`: the custom loop in its step, ``model.fit``
through :func:`fit_train_step`, installed for one fit by :func:`fit_step_installed` and
removed after it, with Keras' compiled step (a saved model is the plain model either way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

SEED_SHIFT = (1, 0)  # added to a seed state [seed, counter] for the second pass


def seed_states(model) -> list:
    """The model's random seed states (a dropout layer's, say): its variables that are not
    weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def sharpness_gradients(variables, grads, rho: float, loss_fn: Callable[[], object],
                        seeds: Sequence = ()) -> list:
    """The gradients of ``loss_fn()`` at ``variables`` moved by ``rho`` along ``grads``.

    ``loss_fn`` computes the loss from the model's current weights (it is called inside a
    stateless scope that maps each variable to its moved value). Variables whose gradient is
    None keep None. With ``rho`` 0 the weights do not move: the result is the gradient at
    ``variables`` again. ``seeds`` (:func:`seed_states`) are read shifted by
    :data:`SEED_SHIFT` in that pass and not advanced by it.
    """
    import keras
    import tensorflow as tf

    pairs = [(v, tf.convert_to_tensor(g)) for v, g in zip(variables, grads) if g is not None]
    norm = tf.linalg.global_norm([tf.cast(g, tf.float32) for _, g in pairs])
    usable = tf.logical_and(tf.math.is_finite(norm), norm > 0.0)
    step = float(rho) / tf.where(usable, norm, 1.0)

    def moved_value(v, g):
        delta = tf.cast(step, v.dtype) * tf.cast(g, v.dtype)
        return tf.convert_to_tensor(v.value) + tf.where(usable, delta, tf.zeros_like(delta))

    moved = [moved_value(v, g) for v, g in pairs]
    with tf.GradientTape() as tape:
        tape.watch(moved)
        mapping = [(v, m) for (v, _), m in zip(pairs, moved)] + [
            (s, tf.convert_to_tensor(s.value) + tf.constant(SEED_SHIFT, s.dtype)) for s in seeds]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            loss = loss_fn()
    got = iter(tape.gradient(loss, moved))
    return [None if g is None else next(got) for g in grads]


def fit_train_step(model, rho: float) -> Callable:
    """A ``train_step`` for ``model.fit`` (compiled ``model``) that applies the SAM gradient;
    the loss and metrics it reports are Keras' own, from the first pass."""
    import keras
    import tensorflow as tf

    seeds = seed_states(model)

    def loss_at_current_weights(x, y, sample_weight):
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                  training=True)
        return y_pred, loss

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred, loss = loss_at_current_weights(x, y, sample_weight)
            scaled = model.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        grads = sharpness_gradients(
            variables, grads, rho,
            lambda: model.optimizer.scale_loss(loss_at_current_weights(x, y, sample_weight)[1]),
            seeds)
        model.optimizer.apply_gradients(zip(grads, variables))
        # the loss as Keras' own step logs it: per replica, summed back over the replicas
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        tracker = next(m for m in model.metrics if m.name == "loss")
        tracker.update_state(loss * tf.cast(replicas, loss.dtype),
                             sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return train_step


@contextlib.contextmanager
def fit_step_installed(model, rho: float):
    """Inside the block ``model.fit`` takes SAM steps (``rho`` 0: Keras' own); after it the
    model has Keras' own step again. A compiled step is dropped on entry and on exit, since
    Keras reuses one that is already built."""
    if not rho:
        yield model
        return
    model.train_step = fit_train_step(model, rho)
    model.train_function = None
    try:
        yield model
    finally:
        del model.train_step
        model.train_function = None
