"""ResNeXt for Keras 3, layer for layer the torchvision architecture.

Built in the style of ``keras.applications.resnet``: one generic builder (:func:`ResNeXt`),
thin named variants (:func:`ResNeXt50` = 32x4d, :func:`ResNeXt101` = 32x8d), arguments checked
with the bad value echoed. Grouped 3x3 convolutions are the built-in ``Conv2D(groups=...)``.

The graph matches torchvision's ``resnext50_32x4d`` / ``resnext101_32x8d`` (ResNet v1.5:
stride on the grouped 3x3 conv, convs without bias, BN eps 1e-5, explicit zero padding so
strided convs pad like PyTorch), so torchvision ImageNet weights convert exactly:

* No Keras ImageNet weights exist for ResNeXt; ``weights="imagenet"`` on
  :func:`ResNeXt50` / :func:`ResNeXt101` reads torchvision's, converted once to
  ``resnext50_32x4d.npz`` / ``resnext101_32x8d.npz``, from the weights folder
  (``$DFD_WEIGHTS_DIR``, else ``~/.cache/dfd/weights``) and, when absent, raises one
  ``FileNotFoundError`` line saying which file, where and how to make it
  (:func:`imagenet_weights`).
* ``weights="x.npz"``: a torchvision ``state_dict`` saved as NumPy arrays (see
  the README, "Temporal model") is converted on load (:func:`load_torchvision_state`).
* any other path: Keras weights (``.weights.h5``) loaded with ``model.load_weights``.

Inputs are RGB normalised the torchvision way (``x/255``, ImageNet mean/std per channel);
:mod:`temporal_tf.model` does that inside the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfd import presets

log = logging.getLogger(__name__)

EXPANSION = 4
BN_EPS = 1e-5
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def _check_args(blocks, groups, width_per_group, base_planes, weights, input_shape, pooling):
    if not blocks or any(int(b) < 1 for b in blocks):
        raise ValueError(f"blocks must be a non-empty sequence of ints >= 1, got {blocks!r}")
    for arg, val in (("groups", groups), ("width_per_group", width_per_group),
                     ("base_planes", base_planes)):
        if int(val) < 1:
            raise ValueError(f"{arg} must be >= 1, got {val!r}")
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet': no Keras ImageNet weights are published for a custom ResNeXt; "
            "use ResNeXt50 / ResNeXt101 (they read torchvision's, converted to .npz, from the "
            "weights folder) or pass the file: weights='/path/resnext50_32x4d.npz' (or a Keras "
            ".weights.h5 file)"
        )
    if weights is not None and not Path(str(weights)).is_file():
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of an existing weights file, "
            f"got {weights!r}"
        )
    check_shape_and_pooling(input_shape, pooling)


def check_shape_and_pooling(input_shape, pooling) -> None:
    """The ``input_shape`` and ``pooling`` checks every backbone builder shares."""
    if (len(input_shape) != 3 or input_shape[-1] != 3
            or any(s is not None and int(s) < 32 for s in input_shape[:2])):
        raise ValueError(
            f"input_shape must be (height, width, 3) with sides >= 32 (or None), got {input_shape!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")


def bottleneck_block(x, planes, width, groups, stride, name):
    """torchvision ``Bottleneck``: 1x1 -> grouped 3x3 (stride) -> 1x1, projection when needed."""
    from keras import layers

    in_ch = x.shape[-1]
    if stride != 1 or in_ch != planes * EXPANSION:
        shortcut = layers.Conv2D(planes * EXPANSION, 1, strides=stride, use_bias=False,
                                 name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_2_pad")(x)
    x = layers.Conv2D(width, 3, strides=stride, groups=groups, use_bias=False,
                      name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(planes * EXPANSION, 1, use_bias=False, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def ResNeXt(
    blocks: Sequence[int],
    groups: int = 32,
    width_per_group: int = 4,
    base_planes: int = 64,
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    trainable: bool = True,
    name: str = "resnext",
):
    """Generic ResNeXt (torchvision layout). Stage ``s`` (0-based) has ``base_planes * 2**s``
    bottleneck planes, ``groups * width_per_group * 2**s`` grouped-conv channels and
    ``4 * planes`` outputs; standard ResNeXt uses ``base_planes=64`` (smaller values give
    tiny test variants)."""
    import keras
    from keras import layers

    input_shape = tuple(input_shape) if input_shape is not None else (224, 224, 3)
    _check_args(blocks, groups, width_per_group, base_planes, weights, input_shape, pooling)
    groups, width_per_group, base_planes = int(groups), int(width_per_group), int(base_planes)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.ZeroPadding2D(padding=3, name="conv1_pad")(inputs)
    x = layers.Conv2D(base_planes, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, n in enumerate(blocks):
        planes = base_planes * 2**stage
        width = groups * width_per_group * 2**stage
        for b in range(int(n)):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = bottleneck_block(x, planes, width, groups, stride,
                                 name=f"conv{stage + 2}_block{b + 1}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        if str(weights).endswith(".npz"):
            with np.load(weights) as state:
                load_torchvision_state(model, dict(state))
        else:
            model.load_weights(weights)
        log.info("loaded %s weights from %s", name, weights)
    model.trainable = trainable
    return model


#: torchvision's ImageNet (IMAGENET1K_V1) checkpoints of the two standard variants
TORCHVISION_URLS = {
    "resnext50_32x4d": "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
}


def imagenet_weights(variant: str) -> str:
    """``weights="imagenet"`` of a standard ResNeXt: the converted torchvision file
    ``<variant>.npz`` in the weights folder; else one ``FileNotFoundError`` line saying which
    file is needed, where it was looked for and where to get it."""
    folder = presets.weights_dir()
    path = folder / f"{variant}.npz"
    if path.is_file():
        return str(path)
    raise FileNotFoundError(
        f"weights='imagenet' for {variant} need the file {variant}.npz: it is not in the "
        f"weights folder {folder} (${presets.ENV_DIR}, else {presets.DEFAULT_DIR}); Keras "
        f"publishes no ResNeXt weights, so convert torchvision's ({TORCHVISION_URLS[variant]}) "
        f"once on a machine with internet as docs/models.md shows and put {variant}.npz there, "
        f"or pass weights='/path/to/{variant}.npz'")


def ResNeXt50(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
              trainable=True, name="resnext50_32x4d"):
    """ResNeXt-50 32x4d (torchvision ``resnext50_32x4d``: 25,028,904 parameters with top)."""
    if weights == "imagenet":
        weights = imagenet_weights("resnext50_32x4d")
    return ResNeXt((3, 4, 6, 3), 32, 4, 64, include_top=include_top, weights=weights,
                   input_shape=input_shape, pooling=pooling, classes=classes,
                   trainable=trainable, name=name)


def ResNeXt101(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
               trainable=True, name="resnext101_32x8d"):
    """ResNeXt-101 32x8d (torchvision ``resnext101_32x8d``: 88,791,336 parameters with top)."""
    if weights == "imagenet":
        weights = imagenet_weights("resnext101_32x8d")
    return ResNeXt((3, 4, 23, 3), 32, 8, 64, include_top=include_top, weights=weights,
                   input_shape=input_shape, pooling=pooling, classes=classes,
                   trainable=trainable, name=name)


# ------------------------------------------------------------ torchvision weight layout


def _torch_prefix(keras_name: str) -> str:
    """Keras layer name -> torchvision module path (``conv3_block2_2_conv`` -> ``layer2.1.conv2``)."""
    if keras_name.startswith("conv1_"):
        return {"conv1_conv": "conv1", "conv1_bn": "bn1"}[keras_name]
    if keras_name == "predictions":
        return "fc"
    stage, block, idx, kind = keras_name.split("_")
    layer = f"layer{int(stage[4:]) - 1}.{int(block[5:]) - 1}"
    if idx == "0":
        return f"{layer}.downsample.{0 if kind == 'conv' else 1}"
    return f"{layer}.{kind}{idx}"


def _weighted_layers(model):
    for layer in model.layers:
        if layer.weights and (layer.name.endswith(("_conv", "_bn")) or layer.name == "predictions"):
            yield layer


def torchvision_state(model) -> dict[str, np.ndarray]:
    """The model's weights as a torchvision ``state_dict`` of NumPy arrays (names and layouts)."""
    out = {}
    for layer in _weighted_layers(model):
        p = _torch_prefix(layer.name)
        w = [np.asarray(v) for v in layer.get_weights()]
        if layer.name == "predictions":
            out[f"{p}.weight"], out[f"{p}.bias"] = w[0].T, w[1]
        elif layer.name.endswith("_conv"):
            out[f"{p}.weight"] = w[0].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            for k, v in zip(("weight", "bias", "running_mean", "running_var"), w):
                out[f"{p}.{k}"] = v
    return out


def load_torchvision_state(model, state: dict[str, np.ndarray]) -> None:
    """Set the model's weights from a torchvision ``state_dict`` (NumPy arrays).

    Every weighted layer must find its tensors with matching shapes; ``fc.*`` is ignored
    when the model has no top, and ``num_batches_tracked`` always.
    """
    missing, used = [], set()
    for layer in _weighted_layers(model):
        p = _torch_prefix(layer.name)
        if layer.name == "predictions":
            keys, fix = [f"{p}.weight", f"{p}.bias"], [lambda a: a.T, lambda a: a]
        elif layer.name.endswith("_conv"):
            keys, fix = [f"{p}.weight"], [lambda a: a.transpose(2, 3, 1, 0)]
        else:
            keys = [f"{p}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            fix = [lambda a: a] * 4
        if any(k not in state for k in keys):
            missing += [k for k in keys if k not in state]
            continue
        new = [f(np.asarray(state[k], np.float32)) for f, k in zip(fix, keys)]
        for k, a, v in zip(keys, new, layer.weights):
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(
                    f"torchvision tensor {k} has shape {a.shape} (converted) but layer "
                    f"{layer.name} expects {tuple(v.shape)}: wrong ResNeXt variant for these weights?"
                )
        layer.set_weights(new)
        used.update(keys)
    if missing:
        raise ValueError(f"torchvision state lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                    and not k.startswith("fc."))
    if unused:
        raise ValueError(f"torchvision state has {len(unused)} tensor(s) this model lacks, "
                         f"e.g. {unused[:3]}: wrong ResNeXt variant for these weights?")
