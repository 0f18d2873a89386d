"""Where MesoNet weights come from: a registry, a local cache, checksums, and loading.

Registered names (aliases in brackets):

==================== ======================== ========================================
name                 file                     what
==================== ======================== ========================================
meso4_df [mesonet_df] Meso4_DF.h5             Meso-4 trained on the authors' Deepfake set
meso4_f2f            Meso4_F2F.h5             Meso-4 trained on FaceForensics Face2Face
mesoinception_df     MesoInception_DF.h5      MesoInception-4, Deepfake set
mesoinception_f2f    MesoInception_F2F.h5     MesoInception-4, Face2Face
==================== ======================== ========================================

The authors' files are Keras 2.1.5 weights-only HDF5 whose sigmoid outputs **P(real)**
(``outputs="p_real"``); :mod:`mesonet_tf.models` appends a frozen flip layer so the
package's models output P(fake). A registered name is looked up in the cache directory
(the ``weights_dir`` argument, else ``$DFD_WEIGHTS_DIR``, else ``~/.cache/dfd/weights``),
checked against its sha256, and downloaded with ``keras.utils.get_file`` when absent.

Trained models shipped in ``mesonet_tf/assets/*.keras`` are registered under their file
stem with ``outputs="p_fake"``; :func:`register_local` adds others at run time.

Each entry also records ``face_margin``, the face framing its model was trained on (see
:mod:`data_prep.faces.align`): 1.3 for the authors' weights (MesoNet's alignment), what the
``<stem>.json`` sidecar says for the assets (1.06 for models trained on DFDC's given crops).
:func:`face_margin_of` answers it for a name or a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ENV_DIR = "DFD_WEIGHTS_DIR"
DEFAULT_DIR = Path("~/.cache/dfd/weights")
BASE_URL = "https://github.com/DariusAf/MesoNet/raw/master/weights/"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
OUTPUTS = ("p_real", "p_fake")
MESONET_MARGIN = 1.3  # = data_prep.faces.align.MESONET_MARGIN (no data_prep import here)


@dataclass(frozen=True)
class WeightsEntry:
    """One registered set of weights (``kind="weights"``) or saved model (``kind="model"``)."""

    name: str
    arch: str | None  # "meso4" / "mesoinception4"; None when unknown
    filename: str
    sha256: str | None = None
    url: str | None = None
    outputs: str = "p_fake"
    description: str = ""
    path: Path | None = None  # a fixed local file (assets, register_local) instead of the cache
    kind: str = "weights"
    face_margin: float | None = None  # face framing it was trained on (None: unknown)


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk, with what its sigmoid means."""

    path: Path
    outputs: str
    arch: str | None = None
    entry: WeightsEntry | None = None

    @property
    def label(self) -> str:
        return self.entry.name if self.entry else str(self.path)


def _authors(name, arch, stem, sha, what):
    return WeightsEntry(name=name, arch=arch, filename=f"{stem}.h5", sha256=sha,
                        url=f"{BASE_URL}{stem}.h5", outputs="p_real", face_margin=MESONET_MARGIN,
                        description=f"authors' {what} (Afchar et al. 2018), Keras 2.1.5 HDF5")


REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in (
    _authors("meso4_df", "meso4", "Meso4_DF",
             "036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5",
             "Meso-4 trained on their Deepfake set"),
    _authors("meso4_f2f", "meso4", "Meso4_F2F",
             "bcfda015d217b9f8d6557693edbdf9f4e79cfd22672541968dd0e2954462b5d7",
             "Meso-4 trained on FaceForensics Face2Face"),
    _authors("mesoinception_df", "mesoinception4", "MesoInception_DF",
             "234586d40058e76ef8b6f27ca4b63c06e31c2a5a69c0d8ba6f30b1468ab7bafa",
             "MesoInception-4 trained on their Deepfake set"),
    _authors("mesoinception_f2f", "mesoinception4", "MesoInception_F2F",
             "d4533ac8a3197dc35c47405d23d99e888c1d0135e267e03540c7451feaccff3f",
             "MesoInception-4 trained on FaceForensics Face2Face"),
)}
ALIASES = {
    "mesonet_df": "meso4_df", "mesonet_f2f": "meso4_f2f",
    "mesoinception4_df": "mesoinception_df", "mesoinception4_f2f": "mesoinception_f2f",
}


def _normalise(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def _guess_arch(stem: str) -> str | None:
    s = stem.lower()
    if s.startswith("mesoinception"):
        return "mesoinception4"
    if s.startswith("meso4") or s.startswith("mesonet"):
        return "meso4"
    return None


def register_local(name: str, path, arch: str | None = None, outputs: str = "p_fake",
                   description: str = "", sha256: str | None = None,
                   kind: str | None = None, face_margin: float | None = None) -> WeightsEntry:
    """Register a local weights file or ``.keras`` model under ``name`` (replacing any entry).

    ``kind`` defaults to ``"model"`` for ``.keras`` files and ``"weights"`` otherwise.
    """
    path = Path(path).expanduser()
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    if not path.exists():
        raise FileNotFoundError(f"cannot register {name!r}: {path} does not exist")
    kind = kind or ("model" if path.suffix == ".keras" else "weights")
    if kind not in ("weights", "model"):
        raise ValueError(f"kind must be 'weights' or 'model', got {kind!r}")
    entry = WeightsEntry(name=_normalise(name), arch=arch or _guess_arch(path.stem),
                         filename=path.name, sha256=sha256, outputs=outputs,
                         description=description or f"local file {path}", path=path, kind=kind,
                         face_margin=None if face_margin is None
                         else check_margin(face_margin, f"face_margin of {name!r}"))
    REGISTRY[entry.name] = entry
    return entry


def register_assets(assets_dir: Path = ASSETS_DIR) -> list[str]:
    """Register every ``*.keras`` in ``assets_dir`` under its stem (a ``<stem>.json`` beside
    it may give ``arch``, ``outputs``, ``description`` and ``face_margin``)."""
    names = []
    for path in sorted(Path(assets_dir).glob("*.keras")):
        meta = {}
        side = path.with_suffix(".json")
        if side.exists():
            meta = json.loads(side.read_text())
        register_local(path.stem, path, arch=meta.get("arch"),
                       outputs=meta.get("outputs", "p_fake"), face_margin=meta.get("face_margin"),
                       description=meta.get("description", "trained by dfd-tf (package asset)"))
        names.append(_normalise(path.stem))
    return names


def check_margin(margin, what: str = "face_margin") -> float:
    """``margin`` as a float within [0.5, 3]; ValueError naming ``what`` and the bad value."""
    try:
        m = float(margin)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {margin!r}") from None
    if not 0.5 <= m <= 3.0:
        raise ValueError(f"{what} must be within [0.5, 3], got {margin!r}")
    return m


def face_margin_of(spec) -> float | None:
    """The face margin a registered name, registered file or authors' ``.h5`` was trained on
    (None when nothing records it)."""
    if is_registered(spec):
        return get_entry(spec).face_margin
    try:
        path = Path(str(spec)).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    for entry in REGISTRY.values():
        if entry.path is not None and Path(entry.path).resolve() == path:
            return entry.face_margin
    if path.is_file() and path.suffix == ".h5":
        entry = _entry_by_sha(path)
        return entry.face_margin if entry else None
    return None


def registered_names() -> list[str]:
    return sorted(REGISTRY)


def get_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name`` (aliases accepted); ``KeyError`` listing the names."""
    key = _normalise(name)
    if key not in REGISTRY:
        raise KeyError(f"no registered weights named {name!r}; known: {registered_names()}")
    return REGISTRY[key]


def is_registered(name) -> bool:
    return isinstance(name, str) and _normalise(name) in REGISTRY


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


def _verify(path: Path, entry: WeightsEntry) -> None:
    if entry.sha256 and (got := sha256_file(path)) != entry.sha256:
        raise ValueError(f"{path} does not match the sha256 of {entry.name!r}: "
                         f"expected {entry.sha256}, got {got}")


def fetch(name: str, directory=None) -> Path:
    """Download a registered file into the cache (``keras.utils.get_file``, sha256-checked)."""
    import keras

    entry = get_entry(name)
    if not entry.url:
        raise ValueError(f"weights {entry.name!r} have no download address")
    d = weights_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s into %s", entry.filename, entry.url, d)
    got = keras.utils.get_file(fname=entry.filename, origin=entry.url, file_hash=entry.sha256,
                               hash_algorithm="sha256", cache_dir=str(d), cache_subdir="")
    path = Path(got)
    _verify(path, entry)
    return path


def locate(name: str, directory=None, download: bool = True) -> Path:
    """The local file of a registered name: its fixed path, the cache, or a download."""
    entry = get_entry(name)
    if entry.path is not None:
        return entry.path
    path = weights_dir(directory) / entry.filename
    if path.exists():
        _verify(path, entry)
        return path
    if not download:
        raise FileNotFoundError(f"weights {entry.name!r} not in the cache {path.parent} "
                                f"(set {ENV_DIR} or download them: {entry.url})")
    return fetch(entry.name, directory)


def _entry_by_sha(path: Path) -> WeightsEntry | None:
    if path.suffix != ".h5" or path.stat().st_size > 50 << 20:
        return None
    sha = sha256_file(path)
    return next((e for e in REGISTRY.values() if e.sha256 == sha), None)


def resolve_weights(weights, weights_dir=None, download: bool = True) -> ResolvedWeights:
    """Turn ``weights=`` (a registered name or a file path) into a file and its convention."""
    if isinstance(weights, (str, Path)) and Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        if path.suffix not in (".h5", ".keras"):
            raise ValueError(f"weights file {path} must be .h5, .weights.h5 or .keras")
        entry = _entry_by_sha(path)
        if entry:
            return ResolvedWeights(path, entry.outputs, entry.arch, entry)
        return ResolvedWeights(path, "p_fake", None, None)
    if is_registered(weights):
        entry = get_entry(weights)
        return ResolvedWeights(locate(entry.name, weights_dir, download), entry.outputs,
                               entry.arch, entry)
    raise ValueError(f"weights must be None, a registered name {registered_names()} or an "
                     f"existing .h5/.weights.h5/.keras file; got {weights!r}")


def is_legacy_h5(path) -> bool:
    """True for a Keras 2 HDF5 file (weights-only or full model, ``layer_names`` layout)."""
    import h5py

    path = Path(path)
    if path.suffix != ".h5" or path.name.endswith(".weights.h5"):
        return False
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        return "layer_names" in g.attrs


def load_into(model, resolved: ResolvedWeights, variant: str, skip_top: bool = False) -> None:
    """Load a resolved weights file into a model built by :mod:`mesonet_tf.models`."""
    if is_legacy_h5(resolved.path):
        load_legacy_h5(model, resolved.path, variant, skip_top=skip_top)
    elif skip_top:
        raise ValueError(f"include_top=False needs the authors' HDF5 weights; "
                         f"{resolved.path} is a Keras 3 file")
    else:
        model.load_weights(str(resolved.path))


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def load_legacy_h5(model, path, variant: str, skip_top: bool = False) -> int:
    """Assign the authors' Keras 2 HDF5 weights layer by layer; returns layers assigned.

    Keras 2 named layers ``conv2d_<n>`` etc. with ``n`` counting creation order within the
    session, so each kind's layers are matched by rank of ``n`` to our layers in the
    authors' creation order (:func:`mesonet_tf.models.authors_layer_ranks`). Every shape is
    checked; a missing or extra layer is an error.
    """
    import h5py

    from mesonet_tf.models import authors_layer_ranks

    ranks = authors_layer_ranks(variant)
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        by_kind: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for lname in (_text(n) for n in g.attrs["layer_names"]):
            if len(g[lname].attrs.get("weight_names", [])) == 0:
                continue
            m = re.fullmatch(r"(.+)_(\d+)", lname)
            if not m:
                raise ValueError(f"{path}: unexpected layer name {lname!r} in a Keras 2 file")
            by_kind[m.group(1)].append((int(m.group(2)), lname))
        for v in by_kind.values():
            v.sort()
        want = defaultdict(int)
        for kind, _ in ranks.values():
            want[kind] += 1
        got = {k: len(v) for k, v in by_kind.items()}
        if got != dict(want):
            raise ValueError(f"{path} does not hold {variant} weights: weighted layers per kind "
                             f"{got}, expected {dict(want)}")
        # a model without the flip layer (weights taken as P(fake)) names its sigmoid p_fake
        names = {layer.name for layer in model.layers}
        alias = {} if "p_real" in names else {"p_fake": "p_real"}
        assigned = 0
        for layer in model.layers:
            key = alias.get(layer.name, layer.name)
            if key not in ranks:
                continue
            kind, rank = ranks[key]
            src = by_kind[kind][rank][1]
            arrays = [g[src][_text(w)][()] for w in g[src].attrs["weight_names"]]
            shapes = [tuple(w.shape) for w in layer.get_weights()]
            if [a.shape for a in arrays] != shapes:
                raise ValueError(f"{path}: layer {src} has shapes {[a.shape for a in arrays]}, "
                                 f"our {layer.name} needs {shapes}")
            layer.set_weights(arrays)
            assigned += 1
    expected = sum(1 for k, _ in ranks.values() if not (skip_top and k == "dense"))
    if assigned != expected:
        raise ValueError(f"assigned {assigned} layers from {path}, expected {expected}")
    return assigned


def build_registered(name: str, weights_dir=None):
    """A Keras model for a registered name: the builder with its weights, or the saved model."""
    import keras

    from mesonet_tf import models

    entry = get_entry(name)
    if entry.kind == "model":
        return keras.models.load_model(str(locate(entry.name, weights_dir)), compile=False)
    if not entry.arch:
        raise ValueError(f"weights {entry.name!r} do not say their architecture")
    return models.build(entry.arch, weights=entry.name, weights_dir=weights_dir,
                        name=entry.name)


register_assets()
