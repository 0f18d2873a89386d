"""Model presets: the one metadata record of a model, and the registry model packages add to.

A :class:`ModelPreset` says everything a user of a model needs besides its weights: which
architecture (a registered builder) and which file, the file's sha256 and download address,
what its sigmoid means (``outputs``), what it takes (``input_kind`` frames or clips,
``face_size``, ``clip_len``), how its faces are framed (``face_margin``, :mod:`dfd.framing`)
and resized (``resize_method``), and the ``calibration`` folded into it. The same record is
written as ``preset.json`` beside every export, every training run and every shipped model
(:func:`write_preset` / :func:`read_preset`), and loaded back by :mod:`dfd.inference`.

The registry maps names to presets (:func:`register`, :func:`get`) and architecture names to
builders (:func:`register_builder`). The core never names a model package: packages register
themselves when imported, and :func:`load_plugins` imports every package declared in the
``dfd.models`` entry-point group (``setup.cfg``), so a third-party package can add its own
models the same way.

Weights files of a preset are looked up in its fixed ``path``, else the cache directory (the
``weights_dir`` argument, else ``$DFD_WEIGHTS_DIR``, else ``~/.cache/dfd/weights``), checked
against the sha256, and downloaded with ``keras.utils.get_file`` when absent and allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dfd import framing
from dfd.config import json_safe

log = logging.getLogger(__name__)

PRESET_FILE = "preset.json"
PLUGIN_GROUP = "dfd.models"
ENV_DIR = "DFD_WEIGHTS_DIR"
DEFAULT_DIR = Path("~/.cache/dfd/weights")
OUTPUTS = ("p_real", "p_fake")
KINDS = ("weights", "model")
INPUT_KINDS = ("frames", "clips")
#: how faces of another size are resized to ``face_size`` (dfd.readers.decode_face)
RESIZE_METHOD = "bilinear"


@dataclass(frozen=True)
class ModelPreset:
    """One model's contract: its file, architecture and preprocessing."""

    name: str
    architecture: str | None = None  # a registered builder ("meso4", "temporal", ...)
    file: str | None = None  # file name in the cache (or of ``path``)
    sha256: str | None = None
    url: str | None = None
    path: str | None = None  # a fixed local file instead of the cache
    kind: str = "weights"  # "weights": loaded into ``architecture``; "model": a saved model
    outputs: str = "p_fake"  # what the file's sigmoid gives (the package's models: P(fake))
    input_kind: str = "frames"  # "frames": one face; "clips": faces [T] + mask
    face_size: int = 256
    clip_len: int | None = None
    face_margin: float | None = None  # framing of the faces it was trained on (None: unknown)
    #: where those faces were centred: the alignment centre moved this many face scales
    #: towards the chin (dfd.framing; 0: the alignment centre, as every preset before it)
    face_centre: float = 0.0
    resize_method: str = RESIZE_METHOD
    calibration: dict | None = None  # Platt scaling folded into the head (dfd calibrate)
    #: the uncertain band around the threshold, chosen on cross-source validation scores
    #: (dfd.evaluation.calibration.choose_uncertain_band); None: plain threshold verdicts
    uncertain: dict | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)  # anything else worth keeping (inputs, versions)

    def __post_init__(self):
        if self.outputs not in OUTPUTS:
            raise ValueError(f"preset {self.name!r}: outputs must be one of {OUTPUTS}, "
                             f"got {self.outputs!r}")
        if self.kind not in KINDS:
            raise ValueError(f"preset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"preset {self.name!r}: input_kind must be one of {INPUT_KINDS}, "
                             f"got {self.input_kind!r}")
        if self.face_margin is not None:
            object.__setattr__(self, "face_margin", framing.check_margin(
                self.face_margin, f"face_margin of {self.name!r}"))
        object.__setattr__(self, "face_centre", framing.check_centre(
            self.face_centre, f"face_centre of {self.name!r}"))

    def replace(self, **changes) -> ModelPreset:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, name: str | None = None) -> ModelPreset:
        """A preset from its dict; older sidecars (``arch``, ``model_info.json``) are read too."""
        data = dict(data)
        if "arch" in data and "architecture" not in data:
            data["architecture"] = data.pop("arch")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(data.pop("extra", None) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        kwargs = {k: v for k, v in data.items() if k in known}
        if name is not None:
            kwargs["name"] = name
        kwargs.setdefault("name", extra.get("model_name", "model"))
        kwargs.setdefault("path", None)
        if kwargs.get("path") is not None:
            kwargs["path"] = str(kwargs["path"])
        return cls(**kwargs, extra=extra)


# ------------------------------------------------------------------------- preset files


def write_preset(preset: ModelPreset, where) -> Path:
    """Write ``preset`` as ``preset.json`` in folder ``where`` (or to the ``.json`` path)."""
    p = Path(where)
    p = p if p.suffix == ".json" else p / PRESET_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_safe(preset.to_dict()), indent=2) + "\n")
    tmp.replace(p)
    return p


def is_flat_savedmodel(path) -> bool:
    p = Path(str(path))
    return p.is_dir() and ((p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists())


def resolve_export(path) -> Path:
    """``path`` itself when it is a SavedModel folder, else the highest numbered version
    ``path/<n>`` that is one (the TF Serving layout ``dfd export`` writes), else ``path``."""
    p = Path(str(path)).expanduser()
    if is_flat_savedmodel(p) or not p.is_dir():
        return p
    versions = [c for c in p.iterdir() if c.name.isdigit() and is_flat_savedmodel(c)]
    return max(versions, key=lambda c: int(c.name)) if versions else p


def preset_from_json(text: str, where: str = "preset") -> ModelPreset:
    """A preset from its JSON text; a broken one is a ``ValueError`` naming ``where``."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
        return ModelPreset.from_dict(data)
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise ValueError(f"model metadata {where} is not a valid preset: {err}") from None


def read_preset(path) -> ModelPreset | None:
    """The preset of a model folder / file: ``preset.json`` in the folder or beside the file,
    else an older ``model_info.json``, else the one a SavedModel carries as its asset
    (``assets/preset.json``); an export folder ``OUT`` is read at its highest version
    ``OUT/<n>``; a package asset's ``<stem>.json`` (beside its ``<stem>.keras``), given itself,
    is read as the preset. None when there is none. A broken file is a ``ValueError`` naming
    it."""
    p = resolve_export(path)
    if p.is_file() and p.suffix.lower() == ".json" and p.with_suffix(".keras").is_file():
        return preset_from_json(p.read_text(), str(p))
    folder = p if p.is_dir() else p.parent
    for f in (folder / PRESET_FILE, folder / "model_info.json", folder / "assets" / PRESET_FILE):
        if f.is_file():
            return preset_from_json(f.read_text(), str(f))
    return None


# ------------------------------------------------------------------------- the registry

REGISTRY: dict[str, ModelPreset] = {}
ALIASES: dict[str, str] = {}


def _normalise(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def register(preset: ModelPreset, aliases=()) -> ModelPreset:
    """Add (or replace) ``preset`` under its name (lower case), with optional aliases."""
    key = _normalise(preset.name)
    preset = preset.replace(name=key) if preset.name != key else preset
    REGISTRY[key] = preset
    for a in aliases:
        ALIASES[str(a).lower()] = key
    return preset


def register_local(name: str, path, architecture: str | None = None, outputs: str = "p_fake",
                   description: str = "", sha256: str | None = None, kind: str | None = None,
                   face_margin: float | None = None, **fields) -> ModelPreset:
    """Register a local weights file or ``.keras`` model under ``name`` (replacing any entry).

    ``kind`` defaults to ``"model"`` for ``.keras`` files and ``"weights"`` otherwise.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"cannot register {name!r}: {path} does not exist")
    kind = kind or ("model" if path.suffix == ".keras" else "weights")
    return register(ModelPreset(
        name=name, architecture=architecture, file=path.name, sha256=sha256, outputs=outputs,
        description=description or f"local file {path}", path=str(path), kind=kind,
        face_margin=face_margin, **fields))


def register_folder(folder, guess_architecture: Callable[[str], str | None] | None = None
                    ) -> list[str]:
    """Register every ``*.keras`` in ``folder`` under its stem; a ``<stem>.json`` preset beside
    it gives its fields (architecture, outputs, face_margin, calibration, description)."""
    names = []
    for path in sorted(Path(folder).glob("*.keras")):
        side = path.with_suffix(".json")
        meta = json.loads(side.read_text()) if side.exists() else {}
        base = ModelPreset.from_dict(meta, name=path.stem)
        arch = base.architecture or (guess_architecture(path.stem) if guess_architecture else None)
        preset = base.replace(architecture=arch, path=str(path), file=path.name, kind="model",
                              description=base.description or "trained by dfd-tf (package asset)")
        names.append(register(preset).name)
    return names


def registered_names() -> list[str]:
    load_plugins()
    return sorted(REGISTRY)


def is_registered(name) -> bool:
    if not isinstance(name, str):
        return False
    load_plugins()
    return _normalise(name) in REGISTRY


def get(name: str) -> ModelPreset:
    """The preset registered as ``name`` (aliases accepted); ``KeyError`` listing the names."""
    load_plugins()
    key = _normalise(name)
    if key not in REGISTRY:
        raise KeyError(f"no model preset named {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[key]


def find_by_path(path) -> ModelPreset | None:
    """The registered preset whose fixed file is ``path``, or whose sha256 ``path`` has."""
    load_plugins()
    try:
        p = Path(str(path)).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    for preset in REGISTRY.values():
        if preset.path is not None and Path(preset.path).resolve() == p:
            return preset
    if p.is_file() and p.suffix == ".h5" and p.stat().st_size <= 50 << 20:
        sha = sha256_file(p)
        return next((e for e in REGISTRY.values() if e.sha256 == sha), None)
    return None


def face_margin_of(spec) -> float | None:
    """The face margin a registered name or registered / known file was trained on (None
    when nothing records it)."""
    if is_registered(spec):
        return get(spec).face_margin
    found = find_by_path(spec)
    return found.face_margin if found else None


# ------------------------------------------------------------------------- builders


def check_image_shape(input_shape, min_size: int, what: str = "input_shape") -> tuple[int, int, int]:
    """``input_shape`` of a single-face builder as ``(height, width, 3)`` ints; ValueError
    echoing the bad value when it is not RGB or smaller than ``min_size`` on a side."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (height, width, 3), got {input_shape!r}") from None
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{what} must be (height, width, 3) RGB, got {input_shape!r}")
    if shape[0] < min_size or shape[1] < min_size:
        raise ValueError(f"{what} {input_shape!r} is too small: height and width must be "
                         f">= {min_size}")
    return shape


@dataclass(frozen=True)
class Builder:
    """How to build an architecture: ``fn(**kwargs)`` (``style="kwargs"``: keras.applications
    style, ``input_shape``/``weights``) or ``fn(config_dict)`` (``style="config"``)."""

    name: str
    fn: Callable
    style: str = "kwargs"
    input_kind: str = "frames"
    #: ``set_trainable(model, trainable)`` for models whose backbone needs care (or None)
    set_backbone_trainable: Callable | None = None


BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, fn: Callable, style: str = "kwargs", input_kind: str = "frames",
                     set_backbone_trainable: Callable | None = None) -> Builder:
    if style not in ("kwargs", "config"):
        raise ValueError(f"builder style must be 'kwargs' or 'config', got {style!r}")
    b = Builder(name, fn, style, input_kind, set_backbone_trainable)
    BUILDERS[name] = b
    return b


def get_builder(name: str) -> Builder:
    load_plugins()
    if name not in BUILDERS:
        raise ValueError(f"unknown model architecture {name!r}: registered ones are "
                         f"{sorted(BUILDERS)} (or give an import path 'package.module:builder')")
    return BUILDERS[name]


def builder_names() -> list[str]:
    load_plugins()
    return sorted(BUILDERS)


_plugins_loaded = False


def load_plugins() -> None:
    """Import every model package of the ``dfd.models`` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - one broken plugin must not hide the others
            log.warning("model package %r (entry point %s) failed to load: %s",
                        ep.name, ep.value, err)


# ------------------------------------------------------------------------- weights files


def weights_dir(directory=None) -> Path:
    """The cache directory: ``directory``, else ``$DFD_WEIGHTS_DIR``, else ``~/.cache/dfd/weights``."""
    d = directory or os.environ.get(ENV_DIR) or DEFAULT_DIR
    return Path(d).expanduser()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, preset: ModelPreset) -> None:
    if preset.sha256 and (got := sha256_file(path)) != preset.sha256:
        raise ValueError(f"{path} does not match the sha256 of {preset.name!r}: "
                         f"expected {preset.sha256}, got {got}")


def missing_weights_message(preset: ModelPreset, directory=None, reason: str = "") -> str:
    """One line: which file is needed, where it was looked for, where to get it."""
    where = weights_dir(directory)
    looked = ("--weights-dir" if directory else
              f"${ENV_DIR}" if os.environ.get(ENV_DIR) else "the default")
    get_it = (f"download {preset.url} on a machine with internet into that folder"
              if preset.url else "it has no download address: copy it into that folder")
    return (f"weights {preset.name!r} need the file {preset.file}, which is not in {where} "
            f"(from {looked}; the weights folder is --weights-dir, else ${ENV_DIR}, else "
            f"{DEFAULT_DIR})" + (f" and the download failed ({reason})" if reason else "")
            + f"; {get_it}, or pass the file's path instead of the name "
              f"(--model /path/to/{preset.file})")


def fetch(name: str, directory=None) -> Path:
    """Download a registered file into the cache (``keras.utils.get_file``, sha256-checked).

    A failed download (no network: the usual case on a cluster node) is a
    ``FileNotFoundError`` saying which file is needed and where to put it."""
    import keras

    preset = get(name)
    if not preset.url:
        raise ValueError(f"weights {preset.name!r} have no download address")
    d = weights_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s into %s", preset.file, preset.url, d)
    try:
        got = keras.utils.get_file(fname=preset.file, origin=preset.url,
                                   file_hash=preset.sha256, hash_algorithm="sha256",
                                   cache_dir=str(d), cache_subdir="")
    except Exception as err:  # noqa: BLE001 - network errors of every kind
        if preset.sha256 and "hash" in str(err).lower():
            raise ValueError(f"download of {preset.name!r} does not match its sha256: {err}") from None
        raise FileNotFoundError(missing_weights_message(
            preset, directory, f"{type(err).__name__}: {err}")) from None
    path = Path(got)
    _verify(path, preset)
    return path


def locate(name: str, directory=None, download: bool = True) -> Path:
    """The local file of a registered name: its fixed path, the cache, or a download."""
    preset = get(name)
    if preset.path is not None:
        return Path(preset.path)
    path = weights_dir(directory) / preset.file
    if path.exists():
        _verify(path, preset)
        return path
    if not download:
        raise FileNotFoundError(missing_weights_message(preset, directory))
    return fetch(preset.name, directory)


def build(name: str, weights_dir=None):
    """A Keras model for a registered preset: the saved model, or its builder with the weights."""
    import keras

    preset = get(name)
    if preset.kind == "model":
        return keras.models.load_model(str(locate(preset.name, weights_dir)), compile=False)
    if not preset.architecture:
        raise ValueError(f"weights {preset.name!r} do not say their architecture")
    builder = get_builder(preset.architecture)
    if builder.style != "kwargs":
        raise ValueError(f"preset {preset.name!r}: builder {builder.name!r} takes a config, "
                         "not registered weights")
    return builder.fn(weights=preset.name, weights_dir=weights_dir, name=preset.name)
