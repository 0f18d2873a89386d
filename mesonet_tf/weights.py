"""The authors' MesoNet weights: their presets, their checksums, and loading their files.

Registered presets (aliases in brackets), with :mod:`dfd.presets`:

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
package's models output P(fake). Their faces were framed by MesoNet's alignment
(:data:`dfd.framing.MESONET_MARGIN`). The files are found (cache, ``$DFD_WEIGHTS_DIR``,
download) by :func:`dfd.presets.locate`.

Trained models shipped in ``mesonet_tf/assets/*.keras`` are registered under their file
stem, each with the preset in its ``<stem>.json`` (:func:`register_assets`).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import h5py

from dfd import framing, presets
from dfd.presets import ModelPreset

log = logging.getLogger(__name__)

BASE_URL = "https://github.com/DariusAf/MesoNet/raw/master/weights/"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
VARIANTS = ("meso4", "mesoinception4")
AUTHORS_OUTPUT_LAYER = "p_real"


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk, with what its sigmoid means."""

    path: Path
    outputs: str
    arch: str | None = None
    preset: ModelPreset | None = None

    @property
    def label(self) -> str:
        return self.preset.name if self.preset else str(self.path)


def _authors(name, arch, stem, sha, what) -> ModelPreset:
    return ModelPreset(name=name, architecture=arch, file=f"{stem}.h5", sha256=sha,
                       url=f"{BASE_URL}{stem}.h5", outputs="p_real",
                       face_margin=framing.MESONET_MARGIN, face_centre=framing.MESONET_CENTRE,
                       description=f"authors' {what} (Afchar et al. 2018), Keras 2.1.5 HDF5")


AUTHORS = (
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
)
ALIASES = {
    "meso4_df": ["mesonet_df"], "meso4_f2f": ["mesonet_f2f"],
    "mesoinception_df": ["mesoinception4_df"], "mesoinception_f2f": ["mesoinception4_f2f"],
}


def guess_arch(stem: str) -> str | None:
    s = stem.lower()
    if s.startswith("mesoinception"):
        return "mesoinception4"
    if s.startswith("meso4") or s.startswith("mesonet"):
        return "meso4"
    return None


def register_presets() -> None:
    """Register the authors' weights with :mod:`dfd.presets`."""
    for p in AUTHORS:
        presets.register(p, aliases=ALIASES.get(p.name, ()))


def register_assets(assets_dir: Path = ASSETS_DIR) -> list[str]:
    """Register every ``*.keras`` in ``assets_dir`` under its stem (its ``<stem>.json`` is its
    preset: architecture, outputs, face_margin, calibration, description)."""
    return presets.register_folder(assets_dir, guess_architecture=guess_arch)


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown MesoNet variant {variant!r}; choose from {VARIANTS}")


def authors_layer_ranks(variant: str) -> dict[str, tuple[str, int]]:
    """Map our layer names to ``(kind, rank)`` in the authors' creation order.

    ``kind`` is the Keras 2 layer-name prefix (``conv2d``, ``batch_normalization``,
    ``dense``); ``rank`` is the 0-based position among that kind's layers in the order the
    authors' code created them (their HDF5 names carry that order in the numeric suffix).
    """
    check_variant(variant)
    convs: list[str] = []
    if variant == "meso4":
        convs = [f"block{i}_conv" for i in range(1, 5)]
    else:
        for i in (1, 2):
            convs += [f"block{i}_b1_conv1x1", f"block{i}_b2_conv1x1", f"block{i}_b2_conv3x3",
                      f"block{i}_b3_conv1x1", f"block{i}_b3_conv3x3_d2",
                      f"block{i}_b4_conv1x1", f"block{i}_b4_conv3x3_d3"]
        convs += ["block3_conv", "block4_conv"]
    ranks = {n: ("conv2d", r) for r, n in enumerate(convs)}
    ranks.update({f"block{i}_bn": ("batch_normalization", i - 1) for i in range(1, 5)})
    ranks["fc1"] = ("dense", 0)
    ranks[AUTHORS_OUTPUT_LAYER] = ("dense", 1)
    return ranks


def resolve_weights(weights, weights_dir=None, download: bool = True) -> ResolvedWeights:
    """Turn ``weights=`` (a registered name or a file path) into a file and its convention."""
    if isinstance(weights, (str, Path)) and Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        if path.suffix not in (".h5", ".keras"):
            raise ValueError(f"weights file {path} must be .h5, .weights.h5 or .keras")
        found = presets.find_by_path(path) if path.suffix == ".h5" else None
        if found and found.sha256:
            return ResolvedWeights(path, found.outputs, found.architecture, found)
        return ResolvedWeights(path, "p_fake", None, None)
    if presets.is_registered(weights):
        p = presets.get(weights)
        return ResolvedWeights(presets.locate(p.name, weights_dir, download), p.outputs,
                               p.architecture, p)
    raise ValueError(f"weights must be None, a registered name {presets.registered_names()} "
                     f"or an existing .h5/.weights.h5/.keras file; got {weights!r}")


def is_legacy_h5(path) -> bool:
    """True for a Keras 2 HDF5 file (weights-only or full model, ``layer_names`` layout)."""
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
