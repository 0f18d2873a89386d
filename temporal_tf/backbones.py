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
``"imagenet"`` for the Keras ResNets is looked for, in this order, in the weights folder
(``$DFD_WEIGHTS_DIR``, else ``~/.cache/dfd/weights``: the file Keras would download, e.g.
``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``), in the Keras cache
(``$KERAS_HOME/models``, default ``~/.keras/models``), else downloaded from Google storage;
without network and file it is one ``FileNotFoundError`` line saying which file, where it was
looked for and where to get it. A path to the file works as well. The ResNeXts' ``"imagenet"``
is the converted torchvision file ``<variant>.npz`` in the weights folder
(:func:`temporal_tf.resnext.imagenet_weights`).
"""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path

import numpy as np

import temporal_tf.resnext as resnext
from dfd import presets

log = logging.getLogger(__name__)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _check_keras_args(weights, input_shape, pooling):
    if not (weights in (None, "imagenet") or Path(str(weights)).is_file()):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of an existing weights file, "
            f"got {weights!r}"
        )
    resnext.check_shape_and_pooling(input_shape, pooling)


#: where keras.applications downloads the ResNets' ImageNet weights from
KERAS_RESNET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


def keras_imagenet_file(arch: str, include_top: bool = False) -> str:
    """The file name of a Keras ResNet's ImageNet weights (``arch``: resnet50, resnet152)."""
    return f"{arch}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def keras_cache() -> Path:
    """The folder Keras keeps downloaded application weights in."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "models"


def _is_fetch_failure(err: BaseException) -> bool:
    return ("fetch failure" in str(err).lower()
            or isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError)))


def missing_imagenet_message(arch: str, include_top: bool = False, reason: str = "") -> str:
    """One line: which ImageNet file ``arch`` needs, where it was looked for, where to get it."""
    fname = keras_imagenet_file(arch, include_top)
    return (f"weights='imagenet' for {arch} need the file {fname}: it is not in the weights "
            f"folder {presets.weights_dir()} (${presets.ENV_DIR}, else {presets.DEFAULT_DIR}) "
            f"nor in the Keras cache {keras_cache()}"
            + (f", and the download failed ({reason})" if reason else "")
            + f"; download {KERAS_RESNET_URL}{fname} on a machine with internet and put it in "
              f"one of those folders, or pass weights='/path/to/{fname}'")


def _keras_resnet(builder, include_top, weights, input_shape, pooling, classes, trainable, name,
                  arch=None):
    input_shape = tuple(input_shape) if input_shape is not None else (224, 224, 3)
    _check_keras_args(weights, input_shape, pooling)
    if include_top and weights == "imagenet" and input_shape != (224, 224, 3):
        raise ValueError(
            f"include_top=True with ImageNet weights needs input_shape (224, 224, 3), "
            f"got {input_shape!r}"
        )
    if weights == "imagenet" and arch:  # offline first: the file put in the weights folder
        local = presets.weights_dir() / keras_imagenet_file(arch, include_top)
        if local.is_file():
            log.info("%s: ImageNet weights from %s", arch, local)
            weights = str(local)
    try:
        model = builder(include_top=include_top, weights=weights, input_shape=input_shape,
                        pooling=pooling, classes=classes, name=name)
    except Exception as err:
        if weights == "imagenet" and arch and _is_fetch_failure(err):
            raise FileNotFoundError(missing_imagenet_message(
                arch, include_top, f"{type(err).__name__}: {err}")) from None
        raise
    model.trainable = trainable
    return model


def ResNet50(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
             trainable=True, name="resnet50"):
    """Keras ResNet50 (25,636,712 parameters with top; caffe-style BGR inputs)."""
    import keras

    return _keras_resnet(keras.applications.ResNet50, include_top, weights, input_shape,
                         pooling, classes, trainable, name, arch="resnet50")


def ResNet152(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
              trainable=True, name="resnet152"):
    """Keras ResNet152 (60,419,944 parameters with top; caffe-style BGR inputs)."""
    import keras

    return _keras_resnet(keras.applications.ResNet152, include_top, weights, input_shape,
                         pooling, classes, trainable, name, arch="resnet152")


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
