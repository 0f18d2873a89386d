"""Export any of the package's Keras models as a SavedModel that carries its preset.

:func:`export_savedmodel` writes one folder that is all of these at once:

* a TensorFlow SavedModel (``saved_model.pb``, ``variables/``) with the signature
  ``serving_default``: ``faces`` uint8 ``[None, 256, 256, 3]`` -> ``p_fake`` float32 ``[None]``
  (the temporal model: ``faces`` uint8 ``[None, T, H, W, 3]`` and ``mask`` bool ``[None, T]``);
  it loads with ``tf.saved_model.load``, ``keras.layers.TFSMLayer`` and TF Serving;
* ``model.keras``: the Keras model itself (``keras.models.load_model``);
* ``preset.json``: the model's :class:`dfd.presets.ModelPreset`: face framing
  (``face_margin``, :mod:`dfd.framing`; null when unknown), face size, clip length, outputs,
  calibration, resize method, and in ``extra`` the input names/shapes/dtypes, the source
  weights and the library versions.

:func:`dfd.inference.loading.load_any` loads any of them back as a scorer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dfd import presets
from dfd.inference.loading import KERAS_FILE, OUTPUT_KEY, SIGNATURE, preset_info

log = logging.getLogger(__name__)

INFO_FILE = presets.PRESET_FILE
INFO_VERSION = 2


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


def model_preset(model, specs, source=None, face_margin: float | None = None,
                 calibration: dict | None = None, uncertain: dict | None = None,
                 **extra) -> presets.ModelPreset:
    """The preset of ``model`` as exported with serving inputs ``specs``: its input contract
    from the specs, what the ``source`` preset (a registered name) records, and ``extra``."""
    import keras
    import tensorflow as tf

    inputs = {s.name: {"shape": list(s.shape.as_list()), "dtype": s.dtype.name} for s in specs}
    faces = inputs.get("faces", {}).get("shape") or []
    clips = len(faces) == 5
    side = faces[-2] if len(faces) >= 3 else None
    base = presets.get(source) if source and presets.is_registered(source) else None
    if face_margin is None and base is not None:
        face_margin = base.face_margin
    return presets.ModelPreset(
        name=model.name, architecture=base.architecture if base else None, file=KERAS_FILE,
        kind="model", outputs="p_fake", input_kind="clips" if clips else "frames",
        face_size=int(side) if side else presets.ModelPreset.face_size,
        clip_len=int(faces[1]) if clips and faces[1] else None,
        face_margin=face_margin, calibration=calibration, uncertain=uncertain,
        description=base.description if base else "",
        extra={"format_version": INFO_VERSION, "model_name": model.name, "signature": SIGNATURE,
               "inputs": inputs, "output": OUTPUT_KEY, "output_shape": [None],
               "source_weights": source, "keras_version": keras.__version__,
               "tensorflow_version": tf.__version__, **extra})


def model_info(model, specs, source=None, face_margin: float | None = None) -> dict:
    """:func:`model_preset` as one flat dict."""
    return preset_info(model_preset(model, specs, source, face_margin))


def export_savedmodel(model, out_dir, input_spec=None, source: str | None = None,
                      save_keras: bool = True, face_margin: float | None = None,
                      extra_info: dict | None = None) -> Path:
    """Write ``model`` to ``out_dir`` as SavedModel + ``model.keras`` + ``model_info.json``.

    ``input_spec``: named ``tf.TensorSpec`` list (or ``{name: (shape, dtype)}``) in the
    model's input order; by default :func:`default_input_spec`. ``source`` (e.g. the weights
    name) is recorded in the preset, and ``face_margin`` (None: that of ``source`` when the
    registry knows it); ``extra_info`` entries go into the preset (``calibration``, the
    field of ``dfd calibrate``; others into its ``extra``). Returns ``out_dir``.
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
    extra = dict(extra_info or {})
    preset = model_preset(model, specs, source, face_margin,
                          calibration=extra.pop("calibration", None),
                          uncertain=extra.pop("uncertain", None), **extra)
    presets.write_preset(preset, out)
    log.info("exported %s to %s (inputs %s)", model.name, out, list(preset.extra["inputs"]))
    return out


def read_model_info(path) -> dict | None:
    """The preset of an export folder (or beside a ``.keras`` file) as one flat dict, if any."""
    return preset_info(presets.read_preset(path))
