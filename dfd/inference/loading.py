"""Load any model as a scorer: ``.keras`` file, SavedModel folder, preset name or Keras model.

:func:`load_any` turns any of them into a :class:`Scorer`: ``scorer(faces[, mask]) ->
np.ndarray`` of P(fake), carrying the model's :class:`dfd.presets.ModelPreset` (read from
the ``preset.json`` beside the file, or the registry's) so callers know its framing, face
size and clip length.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from dfd import presets
from dfd.inference import lite as lite_runtime

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
OUTPUT_KEY = "p_fake"
#: the export's second signature: no input -> {METADATA_KEY: the preset as JSON}
METADATA_SIGNATURE = "metadata"
METADATA_KEY = "preset"
KERAS_FILE = "model.keras"


_is_flat_savedmodel = presets.is_flat_savedmodel
resolve_export = presets.resolve_export


def is_savedmodel(path, versions: bool = True) -> bool:
    """Whether ``path`` is a SavedModel folder (with ``versions``: or holds ``<n>/`` ones)."""
    p = Path(str(path)).expanduser()
    return _is_flat_savedmodel(resolve_export(p) if versions else p)


def preset_info(preset) -> dict | None:
    """A preset as one flat dict (its fields plus its ``extra``: ``inputs``, versions)."""
    if preset is None:
        return None
    d = preset.to_dict()
    extra = d.pop("extra", {}) or {}
    return {**extra, **d}


class Scorer:
    """A callable scoring faces with a model: ``scorer(faces[, mask]) -> float64 P(fake) [N]``.

    ``faces`` is uint8 RGB (floats in 0..255 are rounded); batches of ``batch_size`` go
    through the model in turn.
    """

    def __init__(self, fn, name: str, kind: str, n_inputs: int = 1, model=None,
                 batch_size: int = 64, preset=None, face_margin: float | None = None,
                 runtime: str = "tensorflow"):
        self._fn, self.name, self.kind = fn, name, kind
        #: what runs the model: "tensorflow" (Keras or a SavedModel) or "tflite"
        #: (:mod:`dfd.inference.lite`; ``model`` is still the Keras model)
        self.runtime = runtime
        self.n_inputs, self.model, self.batch_size = n_inputs, model, batch_size
        #: the model's preset (dfd.presets.ModelPreset), None when nothing records one
        self.preset = preset
        #: the preset as a flat dict (``inputs``, ``face_margin``, ``calibration``...)
        self.info = preset_info(preset)
        #: the face framing the model was trained on (dfd.framing); None: unknown
        self.face_margin = face_margin if face_margin is not None else (
            preset.face_margin if preset is not None else None)
        #: where those faces were centred (dfd.framing; 0: the alignment centre)
        self.face_centre = preset.face_centre if preset is not None else 0.0

    def __repr__(self):
        return f"Scorer(name={self.name!r}, kind={self.kind!r}, runtime={self.runtime!r})"

    @property
    def faces_shape(self) -> list | None:
        """The shape of the model's faces input: ``[N, H, W, 3]``, a temporal model's
        ``[N, T, H, W, 3]``, None for a free dimension. Read from the model itself, else from
        an export's recorded signature (``inputs`` of its preset); None when neither says.
        The one place the input contract is read from a loaded model."""
        model = self.model
        if model is not None and getattr(model, "inputs", None):
            inp = (model.input.get("faces", model.inputs[0]) if isinstance(model.input, dict)
                   else model.inputs[0])
            return list(inp.shape)
        shape = ((self.info or {}).get("inputs") or {}).get("faces", {}).get("shape")
        return list(shape) if shape else None

    def __call__(self, faces, mask=None) -> np.ndarray:
        faces = _as_uint8(faces)
        if self.n_inputs == 2 and mask is None:
            raise ValueError(f"model {self.name!r} needs a mask with the faces")
        n = len(faces)
        out = np.empty(n, np.float64)
        for i in range(0, n, self.batch_size):
            args = [faces[i:i + self.batch_size]]
            if self.n_inputs == 2:
                args.append(np.asarray(mask[i:i + self.batch_size], bool))
            out[i:i + self.batch_size] = np.asarray(self._fn(*args), np.float64).reshape(-1)
        return out


def _as_uint8(faces) -> np.ndarray:
    a = np.asarray(faces)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"faces must be a numeric array, got dtype {a.dtype}")
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def scorer_from_keras(model, name: str | None = None, batch_size: int = 64, preset=None,
                      runtime: str = "keras") -> Scorer:
    """A :class:`Scorer` of a Keras model. ``runtime`` (:data:`dfd.inference.lite.RUNTIMES`):
    ``"keras"``; ``"tflite"``: through TensorFlow Lite (``ValueError`` when the model cannot
    run there, saying why); ``"auto"``: TensorFlow Lite when it can and no GPU is visible,
    else Keras."""
    name = name or model.name
    check_runtime(runtime)
    if runtime == "auto" and lite_runtime.gpu_visible():
        log.info("%s runs on Keras: a GPU is visible (TensorFlow Lite would run on the CPU)", name)
        runtime = "keras"
    if runtime != "keras":
        try:
            lite = lite_runtime.lite_model(model, name)
        except lite_runtime.LiteUnavailable as err:
            if runtime == "tflite":
                raise ValueError(f"runtime 'tflite': {err}") from None
            log.info("%s runs on Keras: %s", name, err)
        except Exception as err:  # noqa: BLE001 - auto never fails where Keras runs
            if runtime == "tflite":
                raise ValueError(f"runtime 'tflite': {type(err).__name__}: {err}") from None
            log.warning("%s runs on Keras: converting it to TensorFlow Lite failed "
                        "(%s: %s)", name, type(err).__name__, err)
        else:
            return Scorer(lite, name, "keras", 1, model, batch_size, preset, runtime="tflite")
    n = len(model.inputs)
    dict_inputs = isinstance(model.input, dict)

    def fn(*args):
        if dict_inputs:
            x = dict(zip(model.input.keys(), args))
        else:
            x = args[0] if n == 1 else list(args)
        return model.predict_on_batch(x)

    return Scorer(fn, name, "keras", n, model, batch_size, preset)


def check_runtime(runtime: str) -> str:
    if runtime not in lite_runtime.RUNTIMES:
        raise ValueError(f"runtime must be one of {lite_runtime.RUNTIMES}, got {runtime!r}")
    return runtime


def savedmodel_preset(loaded) -> presets.ModelPreset | None:
    """The preset a loaded SavedModel carries in its ``metadata`` signature (None: none)."""
    if METADATA_SIGNATURE not in loaded.signatures:
        return None
    text = loaded.signatures[METADATA_SIGNATURE]()[METADATA_KEY].numpy().decode()
    return presets.preset_from_json(text, f"the {METADATA_SIGNATURE!r} signature")


def scorer_from_savedmodel(path, batch_size: int = 64) -> Scorer:
    import tensorflow as tf

    path = resolve_export(path)
    loaded = tf.saved_model.load(str(path))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"SavedModel {path} has no {SIGNATURE!r} signature "
                         f"(has {list(loaded.signatures)})")
    sig = loaded.signatures[SIGNATURE]
    names = list(sig.structured_input_signature[1])
    order = [k for k in ("faces", "mask") if k in names] + [k for k in names if k not in ("faces", "mask")]

    def fn(*args):
        feeds = {k: tf.constant(v) for k, v in zip(order, args)}
        return sig(**feeds)[OUTPUT_KEY].numpy()

    preset = presets.read_preset(path) or savedmodel_preset(loaded)
    name = (preset.extra.get("model_name") or preset.name) if preset else Path(path).name
    scorer = Scorer(fn, name, "savedmodel", len(names), None, batch_size, preset)
    scorer.loaded = loaded  # keep the trackable alive
    return scorer


def load_keras(path_or_name, weights_dir=None):
    """A Keras model from a ``.keras`` file, an export folder's ``model.keras``, a registered
    weights name, or one of the authors' ``.h5`` files (recognised by checksum)."""
    import keras

    if isinstance(path_or_name, keras.Model):
        return path_or_name
    p = resolve_export(path_or_name)
    if p.is_dir() and (p / KERAS_FILE).exists():
        p = p / KERAS_FILE
    if p.is_file() and p.suffix == ".keras":
        if not zipfile.is_zipfile(p):  # else Keras says "File not found" of a file that is there
            raise ValueError(f"{p} is not a readable .keras model: not a zip archive (cut short, "
                             f"damaged, or another kind of file; {p.stat().st_size} bytes)")
        return keras.models.load_model(str(p), compile=False)
    if p.is_file() and p.suffix == ".h5":
        known = presets.find_by_path(p)
        if known is None or not known.architecture:
            raise ValueError(f"{p} is a weights file of unknown architecture; build the model "
                             f"with its builder (e.g. mesonet_tf.Meso4(weights=...)) and pass it")
        builder = presets.get_builder(known.architecture)
        return builder.fn(weights=p, name=p.stem.lower())
    if presets.is_registered(str(path_or_name)):
        return presets.build(str(path_or_name), weights_dir=weights_dir)
    raise ValueError(f"model {path_or_name!r} is not a .keras file, an export folder, an .h5 "
                     f"weights file or a registered name {presets.registered_names()}")


def load_any(path_or_name, weights_dir=None, batch_size: int = 64,
             runtime: str = "keras") -> Scorer:
    """A :class:`Scorer` for a Keras model, ``.keras`` file, SavedModel folder or registered name.

    ``runtime`` runs Keras models through TensorFlow Lite (``"tflite"``, ``"auto"``: see
    :func:`scorer_from_keras`); a SavedModel folder runs on TensorFlow (``"tflite"`` is then
    an error: load its ``model.keras`` instead)."""
    if isinstance(path_or_name, Scorer):
        return path_or_name
    check_runtime(runtime)
    if not isinstance(path_or_name, (str, Path)):
        return scorer_from_keras(path_or_name, batch_size=batch_size, runtime=runtime)
    if is_savedmodel(path_or_name):
        if runtime == "tflite":
            raise ValueError(f"runtime 'tflite' runs Keras models; {path_or_name} is a SavedModel "
                             f"(give its {KERAS_FILE}, which `dfd export` writes beside it)")
        return scorer_from_savedmodel(path_or_name, batch_size)
    model = load_keras(path_or_name, weights_dir)
    exists = Path(str(path_or_name)).exists()
    name = Path(str(path_or_name)).stem if exists else str(path_or_name)
    return scorer_from_keras(model, name, batch_size, preset_of(path_or_name), runtime)


def preset_of(spec) -> presets.ModelPreset | None:
    """The preset of a model file / folder (its ``preset.json``), else the registry's entry
    for a registered name or file; None when nothing records one."""
    p = Path(str(spec))
    if p.exists():
        try:
            found = presets.read_preset(p)
        except ValueError as err:
            log.warning("%s", err)
            found = None
        if found is None and is_savedmodel(p):  # no preset.json, no asset: the signature
            import tensorflow as tf

            found = savedmodel_preset(tf.saved_model.load(str(resolve_export(p))))
        if found is not None:
            return found
        return presets.find_by_path(p)
    return presets.get(str(spec)) if presets.is_registered(str(spec)) else None


