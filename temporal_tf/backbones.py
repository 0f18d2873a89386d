"""Per-frame CNN backbones of the temporal model, by name.

=============  ==============================  ==================  =====================
name           architecture                    ImageNet weights    input preprocessing
=============  ==============================  ==================  =====================
``resnet50``   Keras ResNet50 (v1)             Keras download      ``caffe``: BGR, mean
``resnet152``  Keras ResNet152 (v1)            Keras download      ``caffe``: BGR, mean
``resnext50``  ResNeXt-50 32x4d (torchvision)  user file only      ``torch``: /255, mean/std
``resnext101`` ResNeXt-101 32x8d (torchvision) user file only      ``torch``: /255, mean/std
=============  ==============================  ==================  =====================

Every builder takes ``weights=None | "imagenet" | path``, ``include_top``, ``pooling``,
``input_shape`` (default 224 px; the original study used 112) and ``trainable``.
``"imagenet"`` for the Keras ResNets downloads from Google storage, so on machines without
internet pass the downloaded ``.h5`` file as a path instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from temporal_tf import resnext

log = logging.getLogger(__name__)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _check_keras_args(weights, input_shape, pooling):
    if not (weights in (None, "imagenet") or Path(str(weights)).is_file()):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of an existing weights file, "
            f"got {weights!r}"
        )
    resnext.check_shape_and_pooling(input_shape, pooling)


def _keras_resnet(builder, include_top, weights, input_shape, pooling, classes, trainable, name):
    input_shape = tuple(input_shape) if input_shape is not None else (224, 224, 3)
    _check_keras_args(weights, input_shape, pooling)
    if include_top and weights == "imagenet" and input_shape != (224, 224, 3):
        raise ValueError(
            f"include_top=True with ImageNet weights needs input_shape (224, 224, 3), "
            f"got {input_shape!r}"
        )
    model = builder(include_top=include_top, weights=weights, input_shape=input_shape,
                    pooling=pooling, classes=classes, name=name)
    model.trainable = trainable
    return model


def ResNet50(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
             trainable=True, name="resnet50"):
    """Keras ResNet50 (25,636,712 parameters with top; caffe-style BGR inputs)."""
    import keras

    return _keras_resnet(keras.applications.ResNet50, include_top, weights, input_shape,
                         pooling, classes, trainable, name)


def ResNet152(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
              trainable=True, name="resnet152"):
    """Keras ResNet152 (60,419,944 parameters with top; caffe-style BGR inputs)."""
    import keras

    return _keras_resnet(keras.applications.ResNet152, include_top, weights, input_shape,
                         pooling, classes, trainable, name)


ResNeXt50 = resnext.ResNeXt50
ResNeXt101 = resnext.ResNeXt101

BACKBONES = {
    "resnet50": ResNet50,
    "resnet152": ResNet152,
    "resnext50": ResNeXt50,
    "resnext101": ResNeXt101,
}
ALIASES = {"resnext50_32x4d": "resnext50", "resnext101_32x8d": "resnext101"}
PREPROCESSING = {"resnet50": "caffe", "resnet152": "caffe", "resnext50": "torch",
                 "resnext101": "torch"}


def canonical_name(name: str) -> str:
    """Registry name of a backbone (``ResNeXt50_32x4d`` -> ``resnext50``); raises when unknown."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return key


def get_backbone(name: str, **kwargs):
    """Build a backbone by registry name with the builder's keyword arguments."""
    return BACKBONES[canonical_name(name)](**kwargs)


def preprocessing_for(name: str) -> str:
    """``"caffe"`` or ``"torch"``: the input convention of the backbone's ImageNet weights."""
    return PREPROCESSING[canonical_name(name)]


def channel_affine(kind: str):
    """``(kernel[3,3], bias[3])`` mapping RGB 0-255 pixels to the backbone's expected input.

    ``caffe``: RGB -> BGR and the ImageNet BGR mean subtracted (Keras ``preprocess_input``
    for ResNet). ``torch``: ``(x/255 - mean) / std`` per RGB channel. Used as a frozen 1x1
    convolution inside the model, so exported models need no preprocessing code.
    """
    import numpy as np

    if kind == "caffe":
        kernel = np.eye(3, dtype=np.float32)[::-1].copy()  # out BGR channel j <- in RGB 2-j
        bias = -np.asarray(CAFFE_MEAN_BGR, np.float32)
    elif kind == "torch":
        std = np.asarray(resnext.TORCH_STD, np.float32)
        kernel = np.diag(1.0 / (255.0 * std)).astype(np.float32)
        bias = -np.asarray(resnext.TORCH_MEAN, np.float32) / std
    elif kind == "none":
        kernel, bias = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    else:
        raise ValueError(f"preprocessing must be 'caffe', 'torch' or 'none', got {kind!r}")
    return kernel, bias
