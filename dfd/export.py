"""Export any of the package's Keras models, and load any model back as a scorer.

:func:`export_savedmodel` writes one folder that is all of these at once:

* a TensorFlow SavedModel (``saved_model.pb``, ``variables/``) with the signature
  ``serving_default``: ``faces`` uint8 ``[None, 256, 256, 3]`` -> ``p_fake`` float32 ``[None]``
  (the temporal model: ``faces`` uint8 ``[None, T, H, W, 3]`` and ``mask`` bool ``[None, T]``);
  it loads with ``tf.saved_model.load``, ``keras.layers.TFSMLayer`` and TF Serving;
* ``model.keras``: the Keras model itself (``keras.models.load_model``);
* ``model_info.json``: input names, shapes and dtypes, ``outputs: "p_fake"``, the source
  weights, the face framing the model was trained on (``face_margin``, see
  :mod:`data_prep.faces.align`; absent when unknown) and the library versions.

:func:`load_any` turns a ``.keras`` file, a SavedModel folder, a registered weights name or
an in-memory Keras model into a :class:`Scorer`: ``scorer(faces) -> np.ndarray`` of P(fake).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
OUTPUT_KEY = "p_fake"
KERAS_FILE = "model.keras"
INFO_FILE = "model_info.json"
INFO_VERSION = 1


def default_input_spec(model) -> list:
    """Serving inputs for a model: ``faces`` uint8 for image-shaped inputs, ``mask`` bool for
    a ``[None, T]`` input; names taken from the model's inputs when they are ``faces``/``mask``."""
    import tensorflow as tf

    specs = []
    for i, inp in enumerate(model.inputs):
        shape = list(inp.shape)
        if shape[-1] == 3 and len(shape) >= 4:
            specs.append(tf.TensorSpec(shape, tf.uint8, name="faces"))
        elif len(shape) == 2:
            specs.append(tf.TensorSpec(shape, tf.bool, name="mask"))
        else:
            raise ValueError(f"cannot infer a serving spec for input {i} {inp.name!r} with shape "
                             f"{shape}; pass input_spec")
    return specs


def _as_specs(input_spec) -> list:
    import tensorflow as tf

    if isinstance(input_spec, dict):
        return [s if isinstance(s, tf.TensorSpec) else tf.TensorSpec(s[0], s[1], name=k)
                for k, s in input_spec.items()]
    specs = list(input_spec)
    for s in specs:
        if not isinstance(s, tf.TensorSpec) or not s.name:
            raise ValueError(f"input_spec entries must be named tf.TensorSpec, got {s!r}")
    return specs


def _model_caller(model, specs):
    """A graph function calling ``model`` on serving inputs cast to the model's input dtypes."""
    import tensorflow as tf

    if len(specs) != len(model.inputs):
        raise ValueError(f"{len(specs)} serving inputs for a model with {len(model.inputs)}")
    dict_inputs = isinstance(model.input, dict)

    def call(*args):
        cast = [tf.cast(a, inp.dtype) for a, inp in zip(args, model.inputs)]
        if dict_inputs:
            x = dict(zip(model.input.keys(), cast))
        else:
            x = cast[0] if len(cast) == 1 else cast
        y = model(x, training=False)
        if isinstance(y, dict):
            y = y[OUTPUT_KEY]
        return {OUTPUT_KEY: tf.reshape(tf.cast(y, tf.float32), [tf.shape(args[0])[0]])}

    return call


def model_info(model, specs, source=None, face_margin: float | None = None) -> dict:
    import keras
    import tensorflow as tf

    info = {
        "format_version": INFO_VERSION,
        "model_name": model.name,
        "signature": SIGNATURE,
        "inputs": {s.name: {"shape": list(s.shape.as_list()), "dtype": s.dtype.name} for s in specs},
        "outputs": OUTPUT_KEY,
        "output_shape": [None],
        "source_weights": source,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    if face_margin is not None:
        info["face_margin"] = float(face_margin)
    return info


def export_savedmodel(model, out_dir, input_spec=None, source: str | None = None,
                      save_keras: bool = True, face_margin: float | None = None,
                      extra_info: dict | None = None) -> Path:
    """Write ``model`` to ``out_dir`` as SavedModel + ``model.keras`` + ``model_info.json``.

    ``input_spec``: named ``tf.TensorSpec`` list (or ``{name: (shape, dtype)}``) in the
    model's input order; by default :func:`default_input_spec`. ``source`` (e.g. the weights
    name) is recorded in the info file, and ``face_margin`` (None: that of ``source`` when the
    registry knows it); ``extra_info`` entries are added to the info file (e.g. the
    ``calibration`` of ``dfd calibrate``). Returns ``out_dir``.
    """
    import keras

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"export folder {out} is not empty; choose a new one")
    specs = _as_specs(input_spec) if input_spec is not None else default_input_spec(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=_model_caller(model, specs), input_signature=specs)
    archive.write_out(str(out), verbose=False)
    if save_keras:
        model.save(out / KERAS_FILE)
    if face_margin is None and source is not None:
        face_margin = registry_margin(source)
    info = model_info(model, specs, source, face_margin)
    info.update(extra_info or {})
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    log.info("exported %s to %s (inputs %s)", model.name, out, list(info["inputs"]))
    return out


def read_model_info(path) -> dict | None:
    """The ``model_info.json`` of an export folder (or beside a ``.keras`` file), if any."""
    p = Path(path)
    p = p / INFO_FILE if p.is_dir() else p.parent / INFO_FILE
    return json.loads(p.read_text()) if p.exists() else None


def is_savedmodel(path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists())


class Scorer:
    """A callable scoring faces with a model: ``scorer(faces[, mask]) -> float64 P(fake) [N]``.

    ``faces`` is uint8 RGB (floats in 0..255 are rounded); batches of ``batch_size`` go
    through the model in turn.
    """

    def __init__(self, fn, name: str, kind: str, n_inputs: int = 1, model=None,
                 batch_size: int = 64, info: dict | None = None,
                 face_margin: float | None = None):
        self._fn, self.name, self.kind = fn, name, kind
        self.n_inputs, self.model, self.batch_size, self.info = n_inputs, model, batch_size, info
        #: the face framing the model was trained on (data_prep.faces.align); None: unknown
        self.face_margin = face_margin if face_margin is not None else (info or {}).get("face_margin")

    def __repr__(self):
        return f"Scorer(name={self.name!r}, kind={self.kind!r})"

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


def scorer_from_keras(model, name: str | None = None, batch_size: int = 64, info=None) -> Scorer:
    n = len(model.inputs)
    dict_inputs = isinstance(model.input, dict)

    def fn(*args):
        if dict_inputs:
            x = dict(zip(model.input.keys(), args))
        else:
            x = args[0] if n == 1 else list(args)
        return model.predict_on_batch(x)

    return Scorer(fn, name or model.name, "keras", n, model, batch_size, info)


def scorer_from_savedmodel(path, batch_size: int = 64) -> Scorer:
    import tensorflow as tf

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

    info = read_model_info(path)
    name = (info or {}).get("model_name") or Path(path).name
    scorer = Scorer(fn, name, "savedmodel", len(names), None, batch_size, info)
    scorer.loaded = loaded  # keep the trackable alive
    return scorer


def load_keras(path_or_name, weights_dir=None):
    """A Keras model from a ``.keras`` file, an export folder's ``model.keras``, a registered
    weights name, or one of the authors' ``.h5`` files (recognised by checksum)."""
    import keras

    if isinstance(path_or_name, keras.Model):
        return path_or_name
    p = Path(str(path_or_name)).expanduser()
    if p.is_dir() and (p / KERAS_FILE).exists():
        p = p / KERAS_FILE
    if p.is_file() and p.suffix == ".keras":
        return keras.models.load_model(str(p), compile=False)
    from mesonet_tf import weights as registry

    if p.is_file() and p.suffix == ".h5":
        resolved = registry.resolve_weights(p)
        if not resolved.arch:
            raise ValueError(f"{p} is a weights file of unknown architecture; build the model "
                             f"with mesonet_tf.Meso4(weights=...) and pass it instead")
        from mesonet_tf import models

        return models.build(resolved.arch, weights=p, name=p.stem.lower())
    if registry.is_registered(str(path_or_name)):
        return registry.build_registered(str(path_or_name), weights_dir=weights_dir)
    raise ValueError(f"model {path_or_name!r} is not a .keras file, an export folder, an .h5 "
                     f"weights file or a registered name {registry.registered_names()}")


def load_any(path_or_name, weights_dir=None, batch_size: int = 64) -> Scorer:
    """A :class:`Scorer` for a Keras model, ``.keras`` file, SavedModel folder or registered name."""
    if isinstance(path_or_name, Scorer):
        return path_or_name
    if not isinstance(path_or_name, (str, Path)):
        return scorer_from_keras(path_or_name, batch_size=batch_size)
    if is_savedmodel(path_or_name):
        return scorer_from_savedmodel(path_or_name, batch_size)
    model = load_keras(path_or_name, weights_dir)
    exists = Path(str(path_or_name)).exists()
    name = Path(str(path_or_name)).stem if exists else str(path_or_name)
    scorer = scorer_from_keras(model, name, batch_size,
                               read_model_info(path_or_name) if exists else None)
    if scorer.face_margin is None:
        scorer.face_margin = registry_margin(path_or_name)
    return scorer


def registry_margin(spec) -> float | None:
    try:
        from mesonet_tf.weights import face_margin_of
    except ImportError:
        return None
    try:
        return face_margin_of(spec)
    except (OSError, ValueError):
        return None
