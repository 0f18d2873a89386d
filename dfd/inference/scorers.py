"""The scorers of ``dfd detect`` / ``dfd serve``: one frame model, one clip model, or a stacker.

A *scorer* is any object with a ``name`` and ``__call__(faces) -> P(fake)`` where ``faces`` is
a ``uint8 [N, 256, 256, 3]`` array; the pipeline needs nothing else, so tests inject fakes.

* :func:`default_model` names the model used when none is given (the one place to change it).
* :func:`load_scorer` loads ``PATH`` (``.keras``, SavedModel dir) or a registered weights name.
* :class:`StackScorer` scores faces with several named models and combines the per-video
  features with a fitted :class:`dfd.evaluation.stacker.Stacker` (``dfd stack`` writes its JSON).
* :func:`choose_framing` picks the face framing to extract (margin and centre): each model's
  own (recorded with it, see :mod:`dfd.framing`) unless the user names a margin.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dfd import framing, presets, readers
from dfd.evaluation.stacker import Stacker, model_features
from dfd.inference.frames import score_faces
from dfd.inference.loading import load_any
from dfd.scores import aggregate

log = logging.getLogger(__name__)

#: preset name of the shipped default model (a model package registers it)
DEFAULT_MODEL = "dfd_default"
#: registered weights used while no trained model is shipped
FALLBACK_WEIGHTS = "meso4_df"


class ModelLoadError(ValueError):
    """A model, weights name or stacker could not be loaded (the message says which and why)."""


def default_model() -> str:
    """The model ``dfd detect`` / ``dfd serve`` use when none is named: a preset name.

    Order: the preset :data:`DEFAULT_MODEL` (the shipped model, registered by its package),
    else the authors' weights :data:`FALLBACK_WEIGHTS` when they are on disk
    (``$DFD_WEIGHTS_DIR`` or the cache; nothing is downloaded), else a
    :class:`ModelLoadError` saying how to provide one.
    """
    if presets.is_registered(DEFAULT_MODEL):
        p = presets.get(DEFAULT_MODEL)
        return str(p.path) if p.path else p.name
    try:
        presets.locate(FALLBACK_WEIGHTS, download=False)
    except (KeyError, OSError, ValueError) as err:
        raise ModelLoadError(
            f"no default model: no shipped model {DEFAULT_MODEL!r} is registered and the "
            f"authors' weights {FALLBACK_WEIGHTS!r} are not on disk ({err}); pass --model "
            f"PATH|NAME or set ${presets.ENV_DIR} to a folder holding Meso4_DF.h5") from None
    log.warning("no shipped model; using the authors' weights %r (trained on their Deepfake "
                "set, not on DFDC)", FALLBACK_WEIGHTS)
    return FALLBACK_WEIGHTS


class ModelScorer:
    """A :class:`dfd.inference.loading.Scorer` (Keras or SavedModel) as a frame scorer.

    Calls are serialised by a lock: the service scores from several threads, and model
    inference is a small part of a video's time next to decoding and face detection.
    """

    def __init__(self, scorer, name: str):
        self.scorer, self.name = scorer, name
        #: the face framing the model was trained on (None: unknown)
        self.face_margin = getattr(scorer, "face_margin", None)
        #: and their centre (dfd.framing; 0: the alignment centre)
        self.face_centre = float(getattr(scorer, "face_centre", 0.0) or 0.0)
        #: the framing of the faces it is given (set by the pipeline); when it differs from
        #: the model's, the faces are re-cropped to the model's before scoring
        self.input_margin: float | None = None
        self.input_centre = 0.0
        #: the model's fixed face side (None: any); faces of another side are resized to it
        self.face_side = _frame_side(scorer)
        self._lock = threading.Lock()

    def reframe(self, faces: np.ndarray, size: int | None = None) -> np.ndarray:
        """Faces given at ``input_margin`` / ``input_centre`` re-cropped to the model's
        ``face_margin`` / ``face_centre`` (and to ``size``) when the faces hold that square and
        it differs; otherwise unchanged."""
        if self.input_margin is None or self.face_margin is None or not len(faces):
            return faces
        shift = self.face_centre - self.input_centre
        if ((self.face_margin < self.input_margin - 1e-6 or abs(shift) > 1e-6)
                and framing.recrop_fits(self.input_margin, self.face_margin, shift)):
            return framing.recrop_margin(faces, self.input_margin, self.face_margin, size=size,
                                         shift=shift)
        return faces

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros(0, np.float64)
        faces = _resize(self.reframe(faces, size=self.face_side), self.face_side)
        with self._lock:
            return np.asarray(score_faces(self.scorer, faces), dtype=np.float64).reshape(-1)


class ClipScorer(ModelScorer):
    """A temporal model (clip of ``T`` faces + mask -> P(fake)) for ``dfd detect``.

    Each face track is cut into clips exactly as :func:`dfd.inference.clips.predict_shards`
    cuts a shard record (``k = clamp(ceil(n / T), 1, max_clips)`` consecutive segments, one
    uniformly sampled clip each); :meth:`score_track` returns the clips' P(fake) and, for
    plots and per-frame output, each face's score = that of the clip of its segment.
    """

    def __init__(self, scorer, name: str, max_clips: int = 4):
        super().__init__(scorer, name)
        self.max_clips = int(max_clips)
        self.clip_len, self.face_side = _clip_shape(scorer)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self.score_track(faces)[1]

    def score_track(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(clip P(fake) [k], per-face P(fake) [n])`` of one track's faces (in time order)."""
        faces = self._prepare(np.asarray(faces))
        n, t = len(faces), self.clip_len
        if n == 0:
            return np.zeros(0), np.zeros(0)
        k = readers.n_clips(n, t, self.max_clips)
        clips = np.zeros((k, t, *faces.shape[1:]), np.uint8)
        masks = np.zeros((k, t), bool)
        owner = np.zeros(n, int)
        for j in range(k):
            pos, mask = (np.asarray(v) for v in readers.segment_clip(n, j, k, t))
            clips[j][mask] = faces[pos[mask]]
            masks[j] = mask
            owner[j * n // k:(j + 1) * n // k] = j
        with self._lock:
            p = np.asarray(self.scorer(clips, masks), dtype=np.float64).reshape(-1)
        return p, p[owner]

    def _prepare(self, faces: np.ndarray) -> np.ndarray:
        return _resize(self.reframe(faces, size=self.face_side), self.face_side)


def _resize(faces: np.ndarray, side: int | None) -> np.ndarray:
    """Faces ``[N, H, W, 3]`` resized to ``side`` (area interpolation) when they differ."""
    if side and len(faces) and (faces.shape[1] != side or faces.shape[2] != side):
        return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                         for f in faces])
    return faces


def _frame_side(scorer) -> int | None:
    """The fixed square side of a single-face scorer's input (None: not fixed / unknown)."""
    shape = scorer.faces_shape
    if not shape or len(shape) != 4 or not shape[1] or shape[1] != shape[2]:
        return None
    return int(shape[1])


def _clip_shape(scorer) -> tuple[int, int | None]:
    """``(T, fixed face side or None)`` of a temporal scorer's ``faces`` input."""
    shape = scorer.faces_shape
    if not shape or len(shape) != 5 or not shape[1]:
        raise ModelLoadError(f"temporal model {scorer.name!r} has no fixed clip length in its "
                             f"faces input (shape {shape})")
    return int(shape[1]), (int(shape[2]) if shape[2] else None)


def _model_label(spec: str) -> str:
    p = Path(spec)
    return p.stem if (p.suffix or p.is_dir()) else spec


def load_scorer(spec: str | None = None, name: str | None = None,
                runtime: str = "auto") -> ModelScorer:
    """Load a scorer from a ``.keras`` file, a SavedModel dir or a registered name (None: default).

    ``runtime`` (``"auto"``, ``"keras"``, ``"tflite"``): what runs a Keras frame model
    (:mod:`dfd.inference.lite`); by default TensorFlow Lite where the model qualifies."""
    spec = default_model() if spec is None else str(spec)
    try:
        scorer = load_any(spec, runtime=runtime)
    except Exception as err:  # noqa: BLE001 - reported with the spec
        raise ModelLoadError(f"cannot load model {spec!r}: {type(err).__name__}: {err}") from None
    if getattr(scorer, "n_inputs", 1) == 2:
        return ClipScorer(scorer, name or _model_label(spec))
    if getattr(scorer, "n_inputs", 1) != 1:
        raise ModelLoadError(f"model {spec!r} takes {scorer.n_inputs} inputs; dfd detect takes "
                             "frame models (faces) and temporal models (faces + mask)")
    return ModelScorer(scorer, name or _model_label(spec))


def parse_model_specs(values: list[str] | None) -> dict[str, str]:
    """``["a=path1", "b=meso4_df"]`` -> ``{"a": "path1", "b": "meso4_df"}`` (names must be unique)."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, spec = v.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ModelLoadError(f"--model {v!r} with --stacker must be NAME=PATH|WEIGHTS")
        if name.strip() in out:
            raise ModelLoadError(f"model name {name.strip()!r} given twice")
        out[name.strip()] = spec.strip()
    return out


class StackScorer:
    """Several models combined per video by a fitted stacker.

    Frame models give the features ``NAME:mean/vote/max`` over the video's faces, built exactly
    as :func:`dfd.evaluation.stacker.model_features` builds them from frame tables; a temporal model
    (:class:`ClipScorer`) gives ``NAME``, its video score as ``dfd predict`` computes it (the
    mean of each track's clip scores, the most suspicious track). ``__call__`` gives each face
    the mean of the models' P(fake) (a temporal model's: its clip's), for plots.
    """

    def __init__(self, stacker, scorers: dict, name: str = "stacker"):
        self.stacker, self.scorers, self.name = stacker, dict(scorers), name
        missing = sorted(set(stacker.models) - set(self.scorers))
        if missing:
            raise ModelLoadError(f"stacker needs model(s) {missing}; given {sorted(self.scorers)} "
                                 "(pass --model NAME=PATH for each)")
        self.scorers = {k: v for k, v in self.scorers.items() if k in stacker.models}
        for feat in stacker.feature_names:
            model = feat.split(":")[0]
            clip = isinstance(self.scorers[model], ClipScorer)
            if clip == (":" in feat):
                raise ModelLoadError(
                    f"stacker feature {feat!r} needs {model!r} to be a "
                    f"{'frame' if ':' in feat else 'temporal (clip)'} model, but the model given "
                    f"for it is a {'temporal' if clip else 'frame'} model")

    def score_all(self, faces: np.ndarray, track_ids=None):
        """``(per-face P(fake) by model, {temporal model: {track: clip P(fake)}})``."""
        track_ids = np.zeros(len(faces), int) if track_ids is None else np.asarray(track_ids)
        per, clips = {}, {}
        for n, s in self.scorers.items():
            if isinstance(s, ClipScorer):
                per[n], clips[n] = np.empty(len(faces)), {}
                for t in np.unique(track_ids):
                    sel = np.flatnonzero(track_ids == t)
                    clips[n][int(t)], per[n][sel] = s.score_track(faces[sel])
            else:
                per[n] = np.asarray(s(faces), dtype=np.float64).reshape(-1)
        return per, clips

    def score_models(self, faces: np.ndarray, track_ids=None) -> dict[str, np.ndarray]:
        return self.score_all(faces, track_ids)[0]

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        per = self.score_models(faces)
        return np.mean(np.stack(list(per.values())), axis=0)

    def video_score(self, per_model: dict[str, np.ndarray], clips: dict | None = None) -> float:
        """Stacked P(fake) of one video (or one track) from each frame model's face scores and
        each temporal model's clip scores by track (``clips``, from :meth:`score_all`)."""
        blocks = []
        for n, p in per_model.items():
            if isinstance(self.scorers.get(n), ClipScorer):
                tracks = (clips or {}).get(n) or {}
                if not tracks:
                    raise ValueError(f"temporal model {n!r} needs its clip scores (score_all)")
                score = max(aggregate(c, "mean") for c in tracks.values())
                blocks.append(pd.DataFrame({n: [score]}, index=pd.Index(["v"], name="video_id")))
                continue
            frames = pd.DataFrame({"video_id": "v", "track": 0, "frame_index": np.arange(len(p)),
                                   "p_fake": p})
            blocks.append(model_features(n, frames))
        feats = pd.concat(blocks, axis=1)
        return float(self.stacker.predict_features(feats).iloc[0])


def load_stacker(path: str, model_specs: list[str] | None, runtime: str = "auto") -> StackScorer:
    """A :class:`StackScorer` from a stacker JSON and ``NAME=PATH`` model entries (each loaded
    as :func:`load_scorer` loads it, with ``runtime``)."""
    try:
        stacker = Stacker.load(path)
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"cannot load stacker {path!r}: {err}") from None
    specs = parse_model_specs(model_specs)
    unused = sorted(set(specs) - set(stacker.models))
    if unused:
        log.warning("model(s) %s are not used by the stacker; not loaded", unused)
    scorers = {n: load_scorer(s, name=n, runtime=runtime) for n, s in specs.items() if n in stacker.models}
    return StackScorer(stacker, scorers, name=f"stacker({','.join(sorted(stacker.models))})")


def model_scorers(scorer) -> list:
    """The :class:`ModelScorer` objects inside ``scorer`` (itself, or a stacker's models)."""
    if isinstance(scorer, StackScorer):
        return list(scorer.scorers.values())
    return [scorer] if isinstance(scorer, ModelScorer) else []


def face_size_of(scorer) -> int | None:
    """The face side the model(s) of ``scorer`` were exported / trained at, when they record
    one and agree (their presets' ``face_size``); None otherwise."""
    sizes = set()
    for s in model_scorers(scorer):
        preset = getattr(s.scorer, "preset", None)
        sizes.add(int(preset.face_size) if preset is not None and preset.face_size else None)
    return sizes.pop() if len(sizes) == 1 else None


def choose_framing(scorer, margin: float | str | None = "auto") -> tuple[float, float]:
    """The framing ``(margin, centre)`` to extract faces at for ``scorer``, and set each model
    to get its own.

    ``margin="auto"`` (or None): the models' recorded margins (1.3, MesoNet's alignment, for a
    model that records none); a number: that margin for every model. Each model keeps its
    recorded centre. One model: its framing is extracted. Several: the faces are centred
    midway between their centres, at the smallest margin that holds every model's square, and
    each model gets its own square cut from them.
    """
    inner = model_scorers(scorer)
    if margin not in (None, "auto"):
        m = framing.check_margin(margin, "margin ('auto' or a number)")
        for s in inner:
            s.face_margin = m
    for s in inner:
        if s.face_margin is None:
            log.info("model %r records no face margin; using MesoNet's %.2f", s.name, framing.MESONET_MARGIN)
            s.face_margin = framing.MESONET_MARGIN
    centres = [s.face_centre for s in inner] or [0.0]
    c = round((min(centres) + max(centres)) / 2, 6)
    m = max((s.face_margin + 2 * abs(s.face_centre - c) for s in inner),
            default=framing.MESONET_MARGIN)
    for s in inner:
        s.input_margin, s.input_centre = m, c
    return m, c
