"""TimeDistributed CNN + LSTM over a clip of faces -> P(fake).

Graph (built-in Keras layers only, so a saved ``.keras`` file or SavedModel loads without
this package)::

    faces uint8[B,T,H,W,3] --TimeDistributed "preprocess"--> Resizing(face_size) + frozen
        1x1 conv (the backbone's own input convention: caffe BGR-mean or torch mean/std)
    --TimeDistributed "backbone"--> CNN + global average pooling -> [B,T,F]
    --LSTM(units, use_bias=True, mask=mask)--> pooling over valid steps
    --Dropout--> Dense(1, sigmoid, float32) "p_fake"

``mask`` bool[B,T] marks real faces; padded steps change nothing. One pooling rule serves
training and prediction (the original study averaged over time in training but took the last
step when predicting; its LSTM also had no bias because of a positional-argument slip):

* ``"last"``: the LSTM state after the last valid step (Keras masking carries the state over
  padded steps);
* ``"mean"``: the LSTM outputs averaged over valid steps (masked ``GlobalAveragePooling1D``).

The trainer freezes the CNN by the layer name ``"backbone"`` (:func:`set_backbone_trainable`).
Under a ``mixed_float16`` policy the preprocessing and the head stay float32.
"""

from __future__ import annotations

import logging

import temporal_tf.backbones as backbones

log = logging.getLogger(__name__)

POOLINGS = ("last", "mean")
BACKBONE_LAYER = "backbone"
PREPROCESS_LAYER = "preprocess"


def model_name(backbone: str | None) -> str:
    """Score-table model name, e.g. ``temporal-resnet50``."""
    return f"temporal-{backbones.canonical_name(backbone) if backbone else 'custom'}"


def _frame_preprocess(face_size: int, kind: str):
    """Per-frame model: resize to ``face_size`` then the backbone's channel affine."""
    import keras
    from keras import layers

    kernel, bias = backbones.channel_affine(kind)
    inp = keras.Input((None, None, 3), dtype="uint8", name="face")
    x = layers.Rescaling(1.0, dtype="float32", name="to_float")(inp)  # uint8 -> float32
    x = layers.Resizing(face_size, face_size, interpolation="bilinear", antialias=True,
                        dtype="float32", name="resize")(x)
    conv = layers.Conv2D(3, 1, name="color_norm", dtype="float32", trainable=False)
    x = conv(x)
    conv.set_weights([kernel[None, None], bias])
    for v in conv.weights:  # stays frozen even if a caller sets model.trainable = True
        v.trainable = False
    return keras.Model(inp, x, name="frame_preprocess")


def _frame_encoder(backbone, face_size, weights, backbone_model):
    """Per-frame feature model ``[S,S,3] -> [F]`` (global average pooled)."""
    import keras
    from keras import layers

    if backbone_model is None:
        return backbones.get_backbone(backbone, include_top=False, weights=weights,
                                      input_shape=(face_size, face_size, 3), pooling="avg")
    rank = len(backbone_model.output.shape)
    if rank == 2:
        return backbone_model
    if rank != 4:
        raise ValueError(
            f"backbone_model must output [B,F] or [B,h,w,F] features, got shape "
            f"{backbone_model.output.shape}"
        )
    inp = keras.Input((face_size, face_size, 3), name="frame")
    out = layers.GlobalAveragePooling2D(name="avg_pool")(backbone_model(inp))
    return keras.Model(inp, out, name=f"{backbone_model.name}_gap")


def build_temporal_model(
    backbone: str | dict = "resnet50",
    clip_len: int = 16,
    face_size: int = 224,
    lstm_units: int = 128,
    dropout: float = 0.5,
    weights: str | None = None,
    backbone_trainable: bool = True,
    pooling: str = "last",
    backbone_model=None,
    preprocessing: str | None = None,
    input_size: int | None = None,
    name: str | None = None,
):
    """Build the clip model (uncompiled).

    Args:
        backbone: registry name (:data:`temporal_tf.backbones.BACKBONES`); with
            ``backbone_model`` only its name is used (for preprocessing and the model name).
        clip_len: faces per clip ``T``. ``face_size``: side the CNN sees (study: 112).
        weights: backbone weights, ``None`` / ``"imagenet"`` / a file (see backbones).
        pooling: ``"last"`` or ``"mean"`` (see module doc).
        backbone_model: a Keras model ``[S,S,3] -> [F]`` or ``[h,w,F]`` to use as the CNN
            (tests inject a tiny one).
        preprocessing: ``"caffe"``, ``"torch"`` or ``"none"``; default: the backbone's own
            (``"none"`` for an injected model without a registry ``backbone`` name).
        input_size: side of the faces fed in (``None``: any; shards hold 256 px).

    ``build_temporal_model({"backbone": ..., ...})`` (one dict of these options, as the
    trainer's ``model_kwargs``) works too.
    """
    import keras
    from keras import layers

    if isinstance(backbone, dict):
        return build_temporal_model(**backbone)

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    for arg, val in (("clip_len", clip_len), ("face_size", face_size), ("lstm_units", lstm_units)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{arg} must be a positive int, got {val!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if backbone_model is None:
        backbone = backbones.canonical_name(backbone)
    if preprocessing is None:
        preprocessing = (backbones.preprocessing_for(backbone)
                         if backbone and backbone in backbones.BACKBONES else "none")

    faces = keras.Input((clip_len, input_size, input_size, 3), dtype="uint8", name="faces")
    mask = keras.Input((clip_len,), dtype="bool", name="mask")
    x = layers.TimeDistributed(_frame_preprocess(face_size, preprocessing),
                               name=PREPROCESS_LAYER)(faces)
    encoder = _frame_encoder(backbone, face_size, weights, backbone_model)
    encoder.trainable = backbone_trainable
    feats = layers.TimeDistributed(encoder, name=BACKBONE_LAYER)(x)
    seq = layers.LSTM(lstm_units, use_bias=True, return_sequences=pooling == "mean",
                      name="lstm")(feats, mask=mask)
    if pooling == "mean":
        seq = layers.GlobalAveragePooling1D(name="temporal_mean")(seq, mask=mask)
    h = layers.Dropout(dropout, name="dropout")(seq)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(h)
    name = name or model_name(backbone if backbone_model is None else None).replace("-", "_")
    model = keras.Model({"faces": faces, "mask": mask}, out, name=name)
    log.info("built %s: T=%d, %d px, LSTM %d, pooling %s, %s preprocessing, %d parameters",
             name, clip_len, face_size, lstm_units, pooling, preprocessing, model.count_params())
    return model


def set_backbone_trainable(model, trainable: bool, train_batchnorm: bool = False) -> None:
    """Freeze or unfreeze the CNN (the ``"backbone"`` layer).

    With ``train_batchnorm=False`` its BatchNormalization layers stay frozen (inference-mode
    statistics) when unfreezing: Keras 3 ``TimeDistributed`` runs the CNN once per time step,
    so BN would otherwise estimate statistics from only ``batch_size`` faces at a time.
    """
    from keras import layers

    bb = model.get_layer(BACKBONE_LAYER)
    bb.trainable = trainable
    if trainable and not train_batchnorm:
        for layer in bb.layer._flatten_layers():
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
