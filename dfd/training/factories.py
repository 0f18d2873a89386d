"""Model, optimizer, loss and metrics of a run, resolved from the config.

Model names resolve through the builder registry of :mod:`dfd.presets`, which model packages
fill when loaded (the core names none of them):

* a registered architecture with ``style="kwargs"`` (``meso4``, ``mesoinception4``, ...) ->
  ``builder(input_shape=(S, S, 3), **model_kwargs)``;
* one with ``style="config"`` (``temporal``) -> ``builder({clip_len, input_size: face_size,
  **model_kwargs})``;
* ``"package.module:builder"`` -> ``builder(**model_kwargs)`` (your own model).

Every model takes uint8/float RGB faces in 0..255 and outputs P(fake) in float32.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable

from dfd import presets
from dfd.training.config import TrainConfig

log = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"


def resolve_builder(name: str) -> Callable[[TrainConfig], object]:
    """A ``cfg -> keras.Model`` function for model ``name``."""
    if ":" in name:
        module, attr = name.split(":", 1)
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"model {name!r}: cannot import {module}.{attr} ({err})") from None
        return lambda cfg: fn(**cfg.model_kwargs)
    builder = presets.get_builder(name)
    if builder.style == "config":  # clip length and fed-in face side from the config

        def build_from_config(cfg):
            kwargs = {"clip_len": cfg.clip_len, "input_size": cfg.face_size, **cfg.model_kwargs}
            return builder.fn(kwargs)

        return build_from_config

    def build(cfg):  # keras.applications style: input side from face_size unless given
        kwargs = {"input_shape": (cfg.face_size, cfg.face_size, 3), **cfg.model_kwargs}
        return builder.fn(**kwargs)

    return build


def build_model(cfg: TrainConfig, model_fn: Callable | None = None):
    """Build the model (call inside ``strategy.scope()``); checks its output is float32."""
    model = (model_fn or resolve_builder(cfg.model))(cfg)
    out_dtype = getattr(model.outputs[0], "dtype", None) if getattr(model, "outputs", None) else None
    if out_dtype is not None and str(out_dtype) not in ("float32", "<dtype: 'float32'>"):
        raise ValueError(
            f"model {cfg.model!r} outputs {out_dtype}; the P(fake) head must be float32 "
            "(give the last Dense layer dtype='float32' under mixed precision)"
        )
    return model


def set_backbone_trainable(model, trainable: bool, model_name: str = "") -> None:
    """Freeze / unfreeze the layer named ``backbone`` (raises when there is none).

    A builder may register its own rule (the temporal model's keeps its BatchNormalization
    frozen); a time-distributed backbone built by a ``package.module:builder`` uses the rule
    of the registered clip model.
    """
    import keras

    try:
        layer = model.get_layer(BACKBONE_LAYER)
    except ValueError:
        if trainable:
            return  # nothing to unfreeze: the whole model trains
        raise ValueError(
            f"a phase freezes the backbone, but model {model.name!r} has no layer named "
            f"{BACKBONE_LAYER!r}"
        ) from None
    rule = None
    if ":" not in model_name and model_name in presets.builder_names():
        rule = presets.get_builder(model_name).set_backbone_trainable
    if rule is None and isinstance(layer, keras.layers.TimeDistributed):
        rule = next((b.set_backbone_trainable for b in presets.BUILDERS.values()
                     if b.input_kind == "clips" and b.set_backbone_trainable), None)
    if rule is not None:
        rule(model, trainable)
        return
    layer.trainable = trainable


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package (needed to write TensorBoard logs) is installed."""
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed: no TensorBoard logs "
                    "(pip install tensorboard, or set tensorboard=False)")
        return False
    return True


def make_optimizer(name: str, learning_rate: float):
    import keras

    table = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }
    if name not in table:
        raise ValueError(f"optimizer {name!r} is not one of {sorted(table)}")
    return table[name](learning_rate=learning_rate)


def make_loss(name: str):
    """The Keras loss: ``mse`` (the original MesoNet's) or ``bce``."""
    import keras

    if name == "mse":
        return keras.losses.MeanSquaredError(name="mse")
    if name == "bce":
        return keras.losses.BinaryCrossentropy(name="bce")
    raise ValueError(f"loss {name!r} is not one of 'mse', 'bce'")


def per_example_loss(name: str, y, p):
    """Loss per example, ``y`` and ``p`` of shape [B] float32 (for the custom loop)."""
    import tensorflow as tf

    if name == "mse":
        return tf.square(y - p)
    if name == "bce":
        eps = 1e-7
        p = tf.clip_by_value(p, eps, 1.0 - eps)
        return -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
    raise ValueError(f"loss {name!r} is not one of 'mse', 'bce'")


def compile_metrics():
    """The metrics every run reports: auc, accuracy, precision, recall (threshold 0.5)."""
    import keras

    return [
        keras.metrics.AUC(name="auc"),
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
    ]
