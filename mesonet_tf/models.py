"""Meso-4 and MesoInception-4 (Afchar et al., 2018), faithful to the authors' Keras release.

In the style of ``keras.applications``: one generic builder (:func:`MesoNet`) and thin named
variants (:func:`Meso4`, :func:`MesoInception4`). The models are functional models of
built-in Keras layers only, so a saved ``.keras`` file loads without this package.

* Input: RGB faces, uint8 or float in ``0..255``, ``(256, 256, 3)`` by default. Scaling to
  ``[0, 1]`` happens inside the model (``Rescaling(1/255)``, as the authors'
  ``ImageDataGenerator(rescale=1/255)``).
* Output: **P(fake)**, ``float32[batch, 1]``, from a layer named ``"p_fake"``.
* ``input_filter="laplacian"`` (not in the paper): the face enters the convolutions as its
  Laplacian residual divided by the residual's own standard deviation over the face, so no
  global sharpness, brightness or contrast level reaches the network, only where the fine
  detail is and what it looks like (see :data:`INPUT_FILTERS`).

The authors' sigmoid outputs P(real). When their weights are loaded (``weights="meso4_df"``
etc.) the sigmoid layer is named ``"p_real"`` and a frozen built-in ``Dense(1)`` named
``"p_fake"`` with weight ``-1`` and bias ``1`` follows it, so the model (and anything exported
from it) still returns P(fake) = 1 - P(real). A model built with ``weights=None`` (to be
trained by us) has its sigmoid named ``"p_fake"`` directly.

Trainable parameters: 27,977 (Meso4) and 28,615 (MesoInception4), as in the paper.
"""

from __future__ import annotations

import logging

import numpy as np

import mesonet_tf.weights as weights_mod
from dfd import presets

log = logging.getLogger(__name__)

VARIANTS = weights_mod.VARIANTS
DEFAULT_INPUT_SHAPE = (256, 256, 3)
MIN_SIZE = 32  # four poolings: 2 * 2 * 2 * 4
OUTPUT_LAYER = "p_fake"
AUTHORS_OUTPUT_LAYER = weights_mod.AUTHORS_OUTPUT_LAYER
FLIP_LAYER = OUTPUT_LAYER

# What the face is turned into before the first convolution. "none": the authors' input
# (pixels scaled to [0, 1]). "laplacian": the 4-neighbour Laplacian of each colour channel (a
# frozen DepthwiseConv2D, "valid" padding so the border adds no false edge), in grey levels,
# then standardised per face over height, width and channel (LayerNormalization, epsilon 1
# grey level squared so a flat face is not amplified into noise). Its variance over the face
# is the sharpness figure of `dfd audit`; dividing it out removes that cue (and brightness,
# contrast) by construction, leaving the spatial pattern of detail, where a swap's blending
# boundary and its smoother inner face live.
INPUT_FILTERS = ("none", "laplacian")
_LAPLACIAN = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))

# The authors' Inception blocks: (a, b, c, d) filters of the four branches.
_INCEPTION_FILTERS = ((1, 4, 4, 2), (2, 4, 4, 2))


def _check_input_shape(input_shape, include_top: bool, weights) -> tuple[int, int, int]:
    shape = presets.check_image_shape(input_shape, MIN_SIZE)
    if weights is not None and include_top and shape != DEFAULT_INPUT_SHAPE:
        raise ValueError(
            f"with pretrained weights and include_top=True the input_shape must be "
            f"{DEFAULT_INPUT_SHAPE} (the dense layer expects 8x8x16 features), got {shape}"
        )
    return shape


def _input_filter(layers, x, kind: str):
    """The layers of ``input_filter`` after the [0, 1] scaling (nothing for ``"none"``)."""
    if kind == "none":
        return x
    highpass = layers.DepthwiseConv2D((3, 3), padding="valid", use_bias=False, trainable=False,
                                      name="highpass")
    x = highpass(x)
    kernel = np.asarray(_LAPLACIAN, dtype="float32") * 255.0  # residual in grey levels
    highpass.set_weights([np.repeat(kernel[:, :, None, None], 3, axis=2)])
    for v in highpass.weights:  # stays fixed even if a caller sets model.trainable = True
        v.trainable = False
    return layers.LayerNormalization(axis=(1, 2, 3), epsilon=1.0, center=False, scale=False,
                                     name="highpass_norm")(x)


def _conv_block(layers, x, filters: int, kernel: int, pool: int, prefix: str):
    x = layers.Conv2D(filters, (kernel, kernel), padding="same", activation="relu",
                      name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
    return layers.MaxPooling2D((pool, pool), padding="same", name=f"{prefix}_pool")(x)


def _inception_block(layers, x, a: int, b: int, c: int, d: int, prefix: str):
    """The authors' InceptionLayer(a, b, c, d), then BatchNorm and 2x2 max pooling."""
    def conv(inp, f, k, name, dilation=1):
        return layers.Conv2D(f, (k, k), padding="same", activation="relu",
                             dilation_rate=dilation, name=f"{prefix}_{name}")(inp)

    x1 = conv(x, a, 1, "b1_conv1x1")
    x2 = conv(conv(x, b, 1, "b2_conv1x1"), b, 3, "b2_conv3x3")
    x3 = conv(conv(x, c, 1, "b3_conv1x1"), c, 3, "b3_conv3x3_d2", dilation=2)
    x4 = conv(conv(x, d, 1, "b4_conv1x1"), d, 3, "b4_conv3x3_d3", dilation=3)
    y = layers.Concatenate(axis=-1, name=f"{prefix}_concat")([x1, x2, x3, x4])
    y = layers.BatchNormalization(name=f"{prefix}_bn")(y)
    return layers.MaxPooling2D((2, 2), padding="same", name=f"{prefix}_pool")(y)


def MesoNet(
    variant: str,
    weights=None,
    input_shape=DEFAULT_INPUT_SHAPE,
    include_top: bool = True,
    name: str | None = None,
    weights_output: str = "auto",
    weights_dir=None,
    fold_flip: bool = False,
    input_filter: str = "none",
):
    """Build a MesoNet variant; see :func:`Meso4` and :func:`MesoInception4`.

    Args:
        variant: ``"meso4"`` or ``"mesoinception4"``.
        weights: ``None`` (random initialisation), a registered name (see
            :mod:`mesonet_tf.weights`, e.g. ``"meso4_df"``), or a path to an ``.h5`` (the
            authors' Keras 2 format), ``.weights.h5`` or ``.keras`` file.
        input_shape: ``(height, width, 3)``; must be ``(256, 256, 3)`` with pretrained
            weights and ``include_top=True``.
        include_top: whether to include the dense head; without it the model outputs the
            last pooled feature map ``[batch, h/32, w/32, 16]``.
        name: model name (default: the variant).
        weights_output: what the weights' sigmoid means: ``"p_real"`` (the authors'),
            ``"p_fake"`` (ours) or ``"auto"`` (from the registry or the file's checksum;
            unknown files are taken as ``"p_fake"``).
        weights_dir: cache directory for registered weights (default: ``$DFD_WEIGHTS_DIR``
            or ``~/.cache/dfd/weights``).
        fold_flip: with P(real) weights, fold the flip into the output layer instead of
            appending a frozen flip layer: its kernel and bias are negated, since
            sigmoid(-z) = 1 - sigmoid(z). The model is then a plain P(fake) model with the
            authors' initialisation, the starting point for fine-tuning.
        input_filter: ``"none"`` (the authors' input) or ``"laplacian"``: the face enters as
            its Laplacian residual standardised per face (:data:`INPUT_FILTERS`; frozen
            built-in layers ``highpass`` and ``highpass_norm``, no trainable parameters
            added). The authors' weights expect ``"none"``.

    Returns:
        A ``keras.Model`` whose output is P(fake) (``include_top=True``).
    """
    import keras
    from keras import layers

    weights_mod.check_variant(variant)
    if weights_output not in ("auto", "p_real", "p_fake"):
        raise ValueError(f"weights_output must be 'auto', 'p_real' or 'p_fake', got {weights_output!r}")
    if input_filter not in INPUT_FILTERS:
        raise ValueError(f"input_filter must be one of {INPUT_FILTERS}, got {input_filter!r}")
    shape = _check_input_shape(input_shape, include_top, weights)

    resolved = None
    if weights is not None:
        resolved = weights_mod.resolve_weights(weights, weights_dir=weights_dir)
        if resolved.arch and resolved.arch != variant:
            raise ValueError(f"weights {weights!r} are for {resolved.arch!r}, not {variant!r}")
        if weights_output == "auto":
            weights_output = resolved.outputs
        if input_filter != "none" and weights_mod.is_legacy_h5(resolved.path):
            raise ValueError(f"the authors' weights {weights!r} were trained on plain pixels; "
                             f"they cannot start a model with input_filter={input_filter!r}")
    flip = include_top and weights is not None and weights_output == "p_real"
    fold = flip and fold_flip
    flip = flip and not fold

    inputs = keras.Input(shape=shape, name="faces")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = _input_filter(layers, x, input_filter)
    if variant == "meso4":
        x = _conv_block(layers, x, 8, 3, 2, "block1")
        x = _conv_block(layers, x, 8, 5, 2, "block2")
    else:
        for i, (a, b, c, d) in enumerate(_INCEPTION_FILTERS, start=1):
            x = _inception_block(layers, x, a, b, c, d, f"block{i}")
    x = _conv_block(layers, x, 16, 5, 2, "block3")
    x = _conv_block(layers, x, 16, 5, 4, "block4")
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(0.5, name="dropout1")(x)
        x = layers.Dense(16, name="fc1")(x)
        x = layers.LeakyReLU(negative_slope=0.1, name="leaky_relu")(x)
        x = layers.Dropout(0.5, name="dropout2")(x)
        # float32 head even under a mixed-precision policy
        x = layers.Dense(1, activation="sigmoid", dtype="float32",
                         name=AUTHORS_OUTPUT_LAYER if flip else OUTPUT_LAYER)(x)
        if flip:
            # P(fake) = 1 - P(real): a frozen built-in Dense, so saved models need no custom code.
            flipper = layers.Dense(1, name=FLIP_LAYER, trainable=False, dtype="float32",
                                   kernel_initializer="zeros", bias_initializer="zeros")
            x = flipper(x)
            flipper.set_weights([-_ones((1, 1)), _ones((1,))])
    model = keras.Model(inputs, x, name=name or variant)

    if resolved is not None:
        weights_mod.load_into(model, resolved, variant=variant, skip_top=not include_top)
        if fold:
            out = model.get_layer(OUTPUT_LAYER)
            out.set_weights([-w for w in out.get_weights()])
        log.info("%s: loaded weights %s (%s%s)", model.name, resolved.label, weights_output,
                 ", flipped to p_fake" if flip else ", flip folded into the output layer"
                 if fold else "")
    return model


def _ones(shape):
    return np.ones(shape, dtype="float32")


def Meso4(weights=None, input_shape=DEFAULT_INPUT_SHAPE, include_top: bool = True,
          name: str = "meso4", **kwargs):
    """Meso-4: four conv/BN/pool blocks and a 16-unit dense head (27,977 trainable params).

    ``weights``: ``None``, ``"meso4_df"`` (Deepfake), ``"meso4_f2f"`` (Face2Face), another
    registered name, or a weights file. Returns a model outputting P(fake).
    """
    return MesoNet("meso4", weights=weights, input_shape=input_shape,
                   include_top=include_top, name=name, **kwargs)


def MesoInception4(weights=None, input_shape=DEFAULT_INPUT_SHAPE, include_top: bool = True,
                   name: str = "mesoinception4", **kwargs):
    """MesoInception-4: two Inception blocks with dilated branches, then Meso-4's last two
    blocks and head (28,615 trainable params).

    ``weights``: ``None``, ``"mesoinception_df"``, ``"mesoinception_f2f"``, another
    registered name, or a weights file. Returns a model outputting P(fake).
    """
    return MesoNet("mesoinception4", weights=weights, input_shape=input_shape,
                   include_top=include_top, name=name, **kwargs)


BUILDERS = {"meso4": Meso4, "mesoinception4": MesoInception4}


def build(variant: str, **kwargs):
    """Build a variant by name (``"meso4"`` / ``"mesoinception4"``)."""
    weights_mod.check_variant(variant)
    return BUILDERS[variant](**kwargs)
