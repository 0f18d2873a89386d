"""Export any of the package's Keras models as a complete SavedModel: weights, resize, preset.

:func:`export_savedmodel` writes the TF Serving layout ``OUT/<version>/`` (``OUT/1`` by
default), one folder that is all of these at once:

* a TensorFlow SavedModel (``saved_model.pb``, ``variables/``, ``assets/preset.json``) with
  two signatures:

  - ``serving_default``: ``faces`` uint8 ``[None, None, None, 3]`` of ANY size -> ``p_fake``
    float32 ``[None]`` (the temporal model: ``faces`` uint8 ``[None, T, None, None, 3]`` and
    ``mask`` bool ``[None, T]``). Faces are resized to the model's face size inside the graph
    by :func:`dfd.readers.resize_faces` (bilinear, antialiased only when shrinking, rounded
    to uint8: what ``dfd detect --crops`` and the shard readers do), so a crop scores the
    same through the export as through the package;
  - ``metadata``: no input -> ``preset`` string, the model's preset as JSON (the same text
    as ``assets/preset.json``);

  it loads with ``tf.saved_model.load``, ``keras.layers.TFSMLayer`` and TF Serving, and
  needs nothing of this package;
* ``model.keras``: the Keras model itself (``keras.models.load_model``; fixed-size input);
* ``preset.json``: the model's :class:`dfd.presets.ModelPreset`: face framing
  (``face_margin``, :mod:`dfd.framing`; null when unknown), face size, clip length, outputs,
  calibration, resize method, and in ``extra`` the serving inputs' names/shapes/dtypes, the
  source weights and the library versions.

An existing version folder is refused (:class:`ExportExistsError`) unless ``overwrite``.
:func:`dfd.inference.loading.load_any` loads ``OUT`` (its highest version) or ``OUT/<n>``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from dfd import presets, readers
from dfd.config import json_safe
from dfd.inference.loading import (
    KERAS_FILE,
    METADATA_KEY,
    METADATA_SIGNATURE,
    OUTPUT_KEY,
    SIGNATURE,
    is_savedmodel,
    load_keras,
    preset_info,
    preset_of,
)

log = logging.getLogger(__name__)

INFO_VERSION = 3
DEFAULT_VERSION = 1


class ExportExistsError(FileExistsError, ValueError):
    """The export (version) folder exists already and ``overwrite`` was not given."""


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


def _model_side(model) -> int | None:
    """The fixed face side of a model's image input (None: any size)."""
    for inp in model.inputs:
        shape = list(inp.shape)
        if shape[-1] == 3 and len(shape) >= 4:
            h, w = shape[-3], shape[-2]
            return int(h) if h and h == w else None
    return None


def serving_input_spec(model) -> list:
    """:func:`default_input_spec` with the faces' height and width left free (``None``): the
    export resizes them in its graph."""
    import tensorflow as tf

    out = []
    for s in default_input_spec(model):
        shape = s.shape.as_list()
        if s.name == "faces":
            shape[-3] = shape[-2] = None
        out.append(tf.TensorSpec(shape, s.dtype, name=s.name))
    return out


def _model_caller(model, specs, face_size: int | None = None):
    """A graph function calling ``model`` on serving inputs cast to the model's input dtypes;
    the ``faces`` input is resized to ``face_size`` first (:func:`dfd.readers.resize_faces`)."""
    import tensorflow as tf

    if len(specs) != len(model.inputs):
        raise ValueError(f"{len(specs)} serving inputs for a model with {len(model.inputs)}")
    dict_inputs = isinstance(model.input, dict)
    names = [s.name for s in specs]

    def call(*args):
        args = list(args)
        if face_size and "faces" in names:
            i = names.index("faces")
            args[i] = readers.resize_faces(args[i], face_size)
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


def _base_preset(source, base) -> presets.ModelPreset | None:
    if base is not None or not source:
        return base
    if presets.is_registered(str(source)):
        return presets.get(str(source))
    return preset_of(source) if Path(str(source)).exists() else None


def model_preset(model, specs, source=None, face_margin: float | None = None,
                 calibration: dict | None = None, uncertain: dict | None = None,
                 base: presets.ModelPreset | None = None, face_size: int | None = None,
                 face_centre: float | None = None, **extra) -> presets.ModelPreset:
    """The preset of ``model`` as exported with serving inputs ``specs``: its input contract
    from the specs and the model, what ``base`` (else the ``source`` preset: a registered
    name, or a model file with its ``preset.json``) records, and ``extra``. ``face_margin``
    and ``face_centre`` (the framing) default to ``base``'s."""
    import keras
    import tensorflow as tf

    inputs = {s.name: {"shape": list(s.shape.as_list()), "dtype": s.dtype.name} for s in specs}
    faces = inputs.get("faces", {}).get("shape") or []
    clips = len(faces) == 5
    base = _base_preset(source, base)
    side = face_size or _model_side(model) or (faces[-2] if len(faces) >= 3 else None) or (
        base.face_size if base else None)
    if face_margin is None and base is not None:
        face_margin = base.face_margin
    if face_centre is None:
        face_centre = base.face_centre if base is not None else 0.0
    if calibration is None and base is not None:
        calibration = base.calibration
        uncertain = base.uncertain if uncertain is None else uncertain
    return presets.ModelPreset(
        name=model.name, architecture=base.architecture if base else None, file=KERAS_FILE,
        kind="model", outputs="p_fake", input_kind="clips" if clips else "frames",
        face_size=int(side) if side else presets.ModelPreset.face_size,
        clip_len=int(faces[1]) if clips and faces[1] else None,
        face_margin=face_margin, face_centre=face_centre, calibration=calibration,
        uncertain=uncertain, description=base.description if base else "",
        extra={"format_version": INFO_VERSION, "model_name": model.name, "signature": SIGNATURE,
               "metadata_signature": METADATA_SIGNATURE, "inputs": inputs, "output": OUTPUT_KEY,
               "output_shape": [None], "source_weights": None if source is None else str(source),
               "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
               **extra})


def version_dir(out_dir, version: int = DEFAULT_VERSION) -> Path:
    """``OUT/<version>``: where TF Serving looks for version ``version`` of a model."""
    if int(version) < 1 or int(version) != version:
        raise ValueError(f"export version must be a positive integer, got {version!r}")
    return Path(out_dir) / str(int(version))


def _write_savedmodel(model, where: Path, specs, face_size, preset_json: str) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=_model_caller(model, specs, face_size),
                         input_signature=specs)
    src = where.parent / ".asset" / presets.PRESET_FILE  # the asset keeps its file name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(preset_json)
    trackable = getattr(archive, "_tf_trackable", None)
    if trackable is not None:  # a registered asset: copied into assets/ and kept on re-save
        trackable.preset_asset = tf.saved_model.Asset(str(src))

    def metadata():
        return {METADATA_KEY: tf.constant(preset_json)}

    archive.add_endpoint(name=METADATA_SIGNATURE, fn=metadata, input_signature=[])
    archive.write_out(str(where), verbose=False)
    asset = where / "assets" / presets.PRESET_FILE
    if not asset.exists():  # keras without _tf_trackable: the file is still there for readers
        asset.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, asset)
    shutil.rmtree(src.parent)


def export_savedmodel(model, out_dir, input_spec=None, source: str | None = None,
                      save_keras: bool = True, face_margin: float | None = None,
                      extra_info: dict | None = None, version: int = DEFAULT_VERSION,
                      overwrite: bool = False, base: presets.ModelPreset | None = None,
                      face_size: int | None = None) -> Path:
    """Write ``model`` to ``out_dir/<version>`` as SavedModel + ``model.keras`` + ``preset.json``.

    ``input_spec``: named ``tf.TensorSpec`` list (or ``{name: (shape, dtype)}``) in the
    model's input order; by default :func:`serving_input_spec` (faces of any size, resized in
    the graph). ``source`` (e.g. the weights name or model file) is recorded in the preset,
    and the framing, calibration and description of ``base`` (default: the ``source``'s
    preset); ``face_margin`` overrides the framing; ``extra_info`` entries go into the preset
    (``calibration``, the field of ``dfd calibrate``; others into its ``extra``). An existing
    version folder is an :class:`ExportExistsError` unless ``overwrite``. Returns the version
    folder. ``face_size``: the side faces are resized to in the graph (default: the model's
    fixed input side; for a model taking any size, which resizes inside itself like the
    temporal model, the ``base`` preset's, else the package's 256 of the shards).
    """
    out = version_dir(out_dir, version)
    if Path(out_dir).is_file():
        raise ExportExistsError(f"export folder {out_dir} is a file")
    if is_savedmodel(out_dir, versions=False):
        raise ExportExistsError(f"{out_dir} holds a SavedModel of the old flat layout; export "
                                f"into a new folder (the layout is now OUT/<version>/)")
    if out.exists() and not overwrite:
        raise ExportExistsError(f"export {out} exists already; pass --overwrite (overwrite=True) "
                                f"to replace it or --version N for a new version")
    specs = _as_specs(input_spec) if input_spec is not None else serving_input_spec(model)
    extra = dict(extra_info or {})
    preset = model_preset(model, specs, source, face_margin,
                          calibration=extra.pop("calibration", None),
                          uncertain=extra.pop("uncertain", None), base=base,
                          face_size=face_size, **extra)
    text = json.dumps(json_safe(preset.to_dict()), indent=2) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_savedmodel(model, tmp / "sm", specs, preset.face_size, text)
        if save_keras:
            model.save(tmp / "sm" / KERAS_FILE)
        presets.write_preset(preset, tmp / "sm")
        if out.exists():
            shutil.rmtree(out)
        (tmp / "sm").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (inputs %s)", model.name, out, list(preset.extra["inputs"]))
    return out


def export_model(spec, out_dir, weights_dir=None, version: int = DEFAULT_VERSION,
                 overwrite: bool = False, save_keras: bool = True) -> Path:
    """``dfd export``: the model ``spec`` (registered name, ``.keras`` file, export folder or
    authors' ``.h5``) exported to ``out_dir/<version>`` with its preset (framing, calibration)."""
    if version_dir(out_dir, version).exists() and not overwrite:  # refuse before loading
        raise ExportExistsError(f"export {version_dir(out_dir, version)} exists already; pass "
                                f"--overwrite to replace it or --version N for a new version")
    model = load_keras(spec, weights_dir=weights_dir)
    return export_savedmodel(model, out_dir, source=str(spec), save_keras=save_keras,
                             version=version, overwrite=overwrite)


def read_model_info(path) -> dict | None:
    """The preset of an export folder (or beside a ``.keras`` file) as one flat dict, if any."""
    return preset_info(presets.read_preset(path))
