"""Video -> verdict: the per-video work shared by ``dfd detect`` and ``dfd serve``.

:func:`build_context` loads the model(s) and the face detector once; :func:`detect_video`
turns one video into one result dict (never raises); :func:`iter_detect` streams a batch.

Result dict (also the ``--format jsonl`` object and the service's JSON)::

    video, p_fake, verdict, threshold, n_frames, n_faces, status, error, model,   <- CSV columns
    frames_with_face, face_px, sharpness, bpp, quality_warnings,                 <- CSV columns
    label (= verdict, kept in JSON for older clients), aggregation,
    meta{fps, frame_count, width, height, sampler, face_margin, face_centre},
    tracks[{track, p_fake, n_faces}], frames[{track, frame_index, p_fake, box, confidence}],
    timings{decode, detect, align, model, total}

With explanations on (``explain``/``explain_dir``), each ``frames`` entry also carries
``attention{peak, grid, evidence, layer}``: where the model's Grad-CAM map of P(fake) peaks
(x, y as fractions of the face crop) and the map on an 8x8 grid of the crop (summing to 1);
see :mod:`dfd.inference.explain`.

``n_frames`` counts the frames searched for faces, ``n_faces`` the faces scored.
``p_fake`` is P(fake) (NaN -> ``null`` in JSON, empty in CSV when there is no score);
``verdict`` is the model's prediction (:func:`dfd.labels.verdict`): FAKE when
``p_fake >= threshold``, REAL below it (UNCERTAIN inside the model's uncertain band), UNKNOWN
without a score (``status`` ``no_face`` or ``error``). It is never a true label, which is why
the CSV names it ``verdict`` (before: ``label``) and carries the ``threshold``: ``dfd
evaluate`` recognises such a table by them and takes the true labels from ``--labels``.
Each face track (person) is aggregated by ``aggregation`` and the video takes its most
suspicious track (max over tracks).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from data_prep.extract import ExtractConfig, extract_faces
from data_prep.faces import get_detector
from data_prep.faces.images import ImageReadError, read_image
from dfd import schema
from dfd.inference import explain as explain_mod
from dfd.inference import scorers as models
from dfd.labels import verdict
from dfd.priority import lower_this_thread
from dfd.readers import decode_face
from dfd.scores import (
    AGGREGATIONS,
    STATUS_ERROR,
    STATUS_NO_FACE,
    STATUS_OK,
    STATUS_PARTIAL,
    aggregate,
)
from dfd_app.detect import artifacts, quality

log = logging.getLogger(__name__)

CSV_COLUMNS = ["video", "p_fake", "verdict", "threshold", "n_frames", "n_faces", "status", "error",
               "model", "frames_with_face", "face_px", "sharpness", "bpp", "quality_warnings"]
DEFAULT_THRESHOLD = 0.5
DEFAULT_AGGREGATION = "mean"
DEFAULT_N_FRAMES = 32
DEFAULT_SAMPLER = "keyframe"


@dataclass
class DetectContext:
    """Everything loaded once per process, plus per-run output options.

    ``scorer(faces uint8 [N,256,256,3]) -> P(fake) [N]`` (see :mod:`dfd.inference.scorers`);
    ``extract(path, detector, cfg)`` defaults to :func:`data_prep.extract.extract_faces`.
    Copy with :func:`dataclasses.replace` to change output options per request.
    """

    scorer: Callable
    detector: object = None
    extract_cfg: object = None
    threshold: float = DEFAULT_THRESHOLD
    aggregation: str = DEFAULT_AGGREGATION
    extract: Callable | None = None
    plot_dir: str | None = None      # write <video>.png frame-score timelines here
    faces_dir: str | None = None     # write the face crops used (JPEG) here
    plot_png: bool = False           # inline base64 PNG timeline in the result ("plot_png")
    thumbnails: int = 0              # up to N base64 JPEG face thumbnails ("thumbnails")
    thumb_size: int = 96
    details: bool = True             # per-frame / per-track lists in the result
    crops: bool = False              # inputs are face crops (images), scored without detection
    explain: bool = False            # Grad-CAM: "attention" per face, overlays on thumbnails
    explain_dir: str | None = None   # write Grad-CAM overlays (PNG per face) here
    #: the uncertain band ({"low", "high"}: dfd.labels.verdict); None: plain threshold verdicts
    uncertain: dict | None = None
    extras: dict = field(default_factory=dict)
    #: score each face as soon as it is found, while later frames are decoded (EarlyScores);
    #: False: all faces after the last frame (the same scores, later)
    score_while_decoding: bool = True

    @property
    def model_name(self) -> str:
        return str(getattr(self.scorer, "name", type(self.scorer).__name__))

    @property
    def runtime(self) -> str:
        """What runs the model(s): ``tflite``, ``tensorflow`` (Keras or a SavedModel), both
        (``tflite+tensorflow``, a stacker's members), or ``other`` (a scorer of its own)."""
        found = {getattr(getattr(s, "scorer", None), "runtime", None) or "other"
                 for s in models.model_scorers(self.scorer)}
        return "+".join(sorted(found)) or "other"


def make_extract_config(n_frames: int = DEFAULT_N_FRAMES, sampler: str = DEFAULT_SAMPLER, **kw):

    return ExtractConfig(n_frames=n_frames, sampler=sampler, **kw)


def build_context(model: str | None = None, stacker: str | None = None,
                  stack_models: list[str] | None = None, detector: str = "default",
                  detector_kw: dict | None = None, n_frames: int = DEFAULT_N_FRAMES,
                  sampler: str = DEFAULT_SAMPLER, margin: float | str = "auto",
                  all_faces: bool = False, max_decoded_pixels: int | None = None,
                  runtime: str = "auto", **options) -> DetectContext:
    """Load the model(s) and the face detector once and return a :class:`DetectContext`.

    ``model``: path or weights name (None: :func:`dfd.inference.scorers.default_model`).
    ``stacker``: stacker JSON; then ``stack_models`` lists ``NAME=PATH`` entries.
    ``margin``: face framing, ``"auto"`` (each model's own: :func:`dfd.inference.scorers.choose_framing`)
    or a number for every model.
    ``all_faces``: score every person as a track (default: the largest face of each frame).
    ``max_decoded_pixels``: refuse videos with more pixels in all (the service's cap).
    ``runtime``: what runs Keras frame models: ``"auto"`` (TensorFlow Lite where the model
    qualifies, :mod:`dfd.inference.lite`), ``"keras"`` or ``"tflite"`` (an error where it cannot).
    ``uncertain``: ``"auto"`` (the model preset's band, when it records one and the threshold
    is its own), ``"off"``, or ``(low, high)``.
    ``options``: other :class:`DetectContext` fields (threshold, aggregation, plot_dir, ...).
    """

    if options.get("aggregation", DEFAULT_AGGREGATION) not in _aggregations():
        raise ValueError(f"unknown aggregation {options['aggregation']!r}; choose from {_aggregations()}")
    t = float(options.get("threshold", DEFAULT_THRESHOLD))
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {t}")
    scorer = (models.load_stacker(stacker, stack_models, runtime=runtime) if stacker
              else models.load_scorer(model, runtime=runtime))

    options["uncertain"] = choose_band(scorer, options.get("uncertain", "auto"), t)
    face_margin, face_centre = models.choose_framing(scorer, margin)
    if options.get("crops"):  # given crops are scored as they are, never re-framed
        for s in models.model_scorers(scorer):
            s.input_margin = None
    else:
        log.info("faces framed at margin %.2f, centre %+.3f for %s", face_margin, face_centre,
                 scorer.name)
    for s in models.model_scorers(scorer):
        log.info("model %s runs on %s", s.name,
                 {"tflite": "TensorFlow Lite", "tensorflow": "TensorFlow"}.get(
                     getattr(getattr(s, "scorer", None), "runtime", None), "its own scorer"))
    det = get_detector(detector, **(detector_kw or {}))
    return DetectContext(scorer=scorer, detector=det,
                         extract_cfg=make_extract_config(n_frames, sampler, margin=face_margin,
                                                         centre=face_centre,
                                                         all_faces=bool(all_faces),
                                                         max_decoded_pixels=max_decoded_pixels,
                                                         face_size=models.face_size_of(scorer)
                                                         or schema.FACE_SIZE),
                         **options)


def choose_band(scorer, uncertain, threshold: float) -> dict | None:
    """The uncertain band of the verdicts: the model's own (``"auto"``: what its preset records,
    used only when ``threshold`` is the one the band was chosen around), none (``"off"``), or
    a given ``(low, high)`` around ``threshold``."""
    if uncertain in (None, "off"):
        return None
    if uncertain == "auto":
        preset = getattr(getattr(scorer, "scorer", None), "preset", None)
        band = getattr(preset, "uncertain", None)
        if not band:
            return None
        if abs(float(band.get("threshold", threshold)) - threshold) > 1e-9:
            log.info("threshold %.3g is not the one the model's uncertain band was chosen around "
                     "(%.3g): plain threshold verdicts", threshold, band["threshold"])
            return None
        if band.get("low") is None and band.get("high") is None:
            log.warning("on sources the model never trained on, no score range reached "
                        "precision %s for REAL or FAKE (%s validation scores): every verdict "
                        "is UNCERTAIN; --uncertain off gives threshold verdicts",
                        band.get("min_precision", 0.8), band.get("n", "its validation"))
        else:
            for side, verdict_ in (("low", "REAL"), ("high", "FAKE")):
                if band.get(side) is None:
                    log.warning("this model never says %s: on sources it never trained on, no "
                                "score range reached precision %s for it (%s validation scores); those "
                                "videos are UNCERTAIN", verdict_, band.get("min_precision", 0.8),
                                band.get("n", "its validation"))
        return dict(band)
    try:
        low, high = (float(v) for v in uncertain)
    except (TypeError, ValueError):
        raise ValueError(f"uncertain must be 'auto', 'off' or (low, high), got {uncertain!r}") from None
    if not 0.0 <= low <= threshold <= high <= 1.0:
        raise ValueError(f"the uncertain band must satisfy 0 <= low <= threshold <= high <= 1, "
                         f"got low={low}, threshold={threshold}, high={high}")
    return {"low": low, "high": high, "threshold": threshold}


def warm_up(ctx: DetectContext, face_size: int | None = None) -> None:
    """Run the scorer on blank faces, one and a batch of :data:`EARLY_BATCH`, so the first
    request does not pay for tracing."""
    size = face_size or int(getattr(ctx.extract_cfg, "face_size", 0) or schema.FACE_SIZE)
    for n in (1, EARLY_BATCH):
        ctx.scorer(np.zeros((n, size, size, 3), np.uint8))


def _aggregations() -> list[str]:

    return sorted(AGGREGATIONS)


def _failure_status(err: BaseException) -> str:
    names = {c.__name__ for c in type(err).__mro__}
    return STATUS_NO_FACE if "NoFaceError" in names else STATUS_ERROR


def _base_record(path: str, ctx: DetectContext) -> dict:
    return {"video": str(path), "p_fake": float("nan"), "verdict": "UNKNOWN", "label": "UNKNOWN",
            "threshold": ctx.threshold, "n_frames": 0, "n_faces": 0, "status": STATUS_ERROR,
            "error": "", "model": ctx.model_name, "aggregation": ctx.aggregation}


def _fail(rec: dict, status: str, error: str) -> dict:
    rec.update(status=status, error=error, p_fake=float("nan"), verdict="UNKNOWN", label="UNKNOWN")
    return rec


def _meta(vf, ctx: DetectContext) -> dict:
    meta = {k: getattr(vf, k, None) for k in ("fps", "frame_count", "width", "height", "sampler")}
    meta.update(getattr(vf, "meta", None) or {})  # + rotation, frames_claimed, frames_decoded
    meta["face_margin"] = getattr(ctx.extract_cfg, "margin", None)
    meta["face_centre"] = getattr(ctx.extract_cfg, "centre", None)
    return meta


#: faces per batch of the scoring that runs while a video is still decoded
EARLY_BATCH = 8
_DONE = object()
#: held around every call of a per-face scorer here: the scoring thread of the next video
#: (iter_detect) may run beside this video's scoring, and a DetectContext's scorer may be any
#: callable (ModelScorer has its own lock as well)
_SCORER_LOCK = threading.RLock()


def _scores_each_face(ctx: DetectContext) -> bool:
    """Whether the model scores faces one by one (not clips of a track, not a stacker), so
    that a face can be scored as soon as it is found."""
    return not hasattr(ctx.scorer, "score_track") and not (
        hasattr(ctx.scorer, "video_score") and hasattr(ctx.scorer, "score_all"))


def _any_batch_length(scorer) -> bool:
    """Whether ``scorer`` runs a model through TensorFlow Lite's interpreter, which costs the
    same per face at any batch length (32 faces as 1 x 32 or 32 x 1: 0.18-0.21 s) and traces
    nothing: then early faces are scored as they come, not padded to a batch."""
    return getattr(getattr(scorer, "scorer", None), "runtime", None) == "tflite"


class EarlyScores:
    """Faces scored while the rest of the video is still decoded and searched: handed over by
    :func:`data_prep.extract.extract_faces` (``on_face``) and scored by a thread, ``batch``
    at a time, beside the decoder and the face detector (PyAV, onnxruntime and TensorFlow
    all release the GIL). With ``greedy`` (the default where the model runs on TensorFlow
    Lite) each face is scored as soon as the thread is free, with whatever else has come
    meanwhile (up to ``batch``), unpadded: the faces of the last frames then wait for at most
    one batch in flight, not for a full one (measured: a clip 0.03-0.06 s sooner). The thread
    runs ``nice`` lower than the decoder (:mod:`dfd.priority`). :meth:`finish` returns
    ``{frame_index: (face, P(fake))}``.

    A batch that fails or gives a wrong number of scores is left out: those faces are scored
    after the extraction as before, where an error is reported as usual, so this path never
    loses or invents a score (a face's early score is used only if it is the very crop scored;
    the batch is padded to one shape, so a model whose score of a face depended on the rest of
    its batch would differ by that; none of ours does). :meth:`finish` with ``cancel`` (the
    extraction failed) drops what is left unscored."""

    def __init__(self, scorer, batch: int = EARLY_BATCH, nice: int = 0,
                 greedy: bool | None = None):
        self.scorer, self.batch, self.nice = scorer, int(batch), int(nice)
        # score what has come at once, unpadded, when a short batch costs no more per face
        self.greedy = _any_batch_length(scorer) if greedy is None else bool(greedy)
        self.scores: dict[int, tuple[np.ndarray, float]] = {}
        self.busy = 0.0  # seconds spent scoring
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name="dfd-early-score", daemon=True)
        self._thread.start()

    def add(self, frame_index: int, face: np.ndarray) -> None:
        self._queue.put((int(frame_index), face))

    def _work(self) -> None:
        lower_this_thread(self.nice)  # yields to the decoder, like the face search
        pending, done = [], False
        while not done:
            item = self._queue.get()
            done = item is _DONE
            if not done:
                pending.append(item)
            while self.greedy and not done and len(pending) < self.batch:
                try:  # what else came while the last batch was scored
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                done = item is _DONE
                if not done:
                    pending.append(item)
            if pending and (done or self.greedy or len(pending) >= self.batch):
                if not self._cancel.is_set():
                    self._score(pending)
                pending = []

    def _score(self, items) -> None:
        t = time.perf_counter()
        faces = np.stack([f for _, f in items])
        if len(faces) < self.batch and not self.greedy:  # one shape: traced once, not per size
            faces = np.concatenate([faces, np.zeros((self.batch - len(faces), *faces.shape[1:]),
                                                    faces.dtype)])
        try:
            with _SCORER_LOCK:
                raw = np.asarray(self.scorer(faces), np.float64)
        except Exception as err:  # noqa: BLE001 - scored again after the extraction
            log.debug("scoring %d faces early failed (scored again later): %s", len(items), err)
            return
        finally:
            self.busy += time.perf_counter() - t
        if raw.shape in ((len(faces),), (len(faces), 1)):  # else: scored again, and refused
            p = raw.reshape(-1)[:len(items)]
            self.scores.update({i: (f, float(v)) for (i, f), v in zip(items, p)})

    def finish(self, cancel: bool = False) -> dict:
        """Score what is left (``cancel``: drop it), stop the thread; the scores by frame
        index."""
        if cancel:
            self._cancel.set()
        self._queue.put(_DONE)
        self._thread.join()
        return self.scores


def _known_scores(early: dict | None, faces: np.ndarray, frame_idx: np.ndarray) -> np.ndarray:
    """Each face's early score where that very crop was scored early, else NaN."""
    p = np.full(len(faces), np.nan)
    for i, (face, idx) in enumerate(zip(faces, frame_idx)):
        got = (early or {}).get(int(idx))
        if got is not None and got[0].shape == face.shape and np.array_equal(got[0], face):
            p[i] = got[1]
    return p


def _score(ctx: DetectContext, faces: np.ndarray, track_ids: np.ndarray, known=None):
    """Per-face P(fake), per-track scores and the video score (``known``: scores already
    computed for some faces, NaN for the rest)."""
    if hasattr(ctx.scorer, "score_track"):
        return _score_clips(ctx, faces, track_ids)
    stack = hasattr(ctx.scorer, "video_score") and hasattr(ctx.scorer, "score_all")
    if stack:
        per_model, clips = ctx.scorer.score_all(faces, track_ids)
        p = np.mean(np.stack(list(per_model.values())), axis=0)
    else:
        p = np.full(len(faces), np.nan) if known is None else np.array(known, np.float64)
        todo = np.isnan(p)
        if todo.any():
            with _SCORER_LOCK:
                got = np.asarray(ctx.scorer(faces[todo]), dtype=np.float64).reshape(-1)
            if got.shape != (int(todo.sum()),):
                raise ValueError(f"model {ctx.model_name!r} returned {got.shape} scores for "
                                 f"{int(todo.sum())} faces")
            p[todo] = got
    if p.shape != (len(faces),):
        raise ValueError(f"model {ctx.model_name!r} returned {p.shape} scores for {len(faces)} faces")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"model {ctx.model_name!r} returned scores outside [0, 1]")
    tracks = []
    for t in np.unique(track_ids):
        sel = track_ids == t
        ts = (ctx.scorer.video_score({n: v[sel] for n, v in per_model.items()},
                                     {n: {int(t): c[int(t)]} for n, c in clips.items()})
              if stack else aggregate(p[sel], ctx.aggregation))
        tracks.append({"track": int(t), "p_fake": float(ts), "n_faces": int(sel.sum())})
    if stack:
        video = ctx.scorer.video_score(per_model, clips)
    else:
        video = float(np.nanmax([t["p_fake"] for t in tracks])) if tracks else float("nan")
    return p, tracks, video


def _score_clips(ctx: DetectContext, faces: np.ndarray, track_ids: np.ndarray):
    """A temporal model: each track's clips are scored and aggregated; per-face scores are
    their clip's. The video takes its most suspicious track."""
    p = np.empty(len(faces), np.float64)
    tracks = []
    for t in np.unique(track_ids):
        sel = np.flatnonzero(track_ids == t)
        clip_p, face_p = ctx.scorer.score_track(faces[sel])
        if np.any((clip_p < 0) | (clip_p > 1)) or len(face_p) != len(sel):
            raise ValueError(f"model {ctx.model_name!r} returned bad clip scores {clip_p}")
        p[sel] = face_p
        tracks.append({"track": int(t), "p_fake": float(aggregate(clip_p, ctx.aggregation)),
                       "n_faces": int(len(sel)), "n_clips": int(len(clip_p))})
    video = float(np.nanmax([t["p_fake"] for t in tracks])) if tracks else float("nan")
    return p, tracks, video


def detect_video(path: str | Path, ctx: DetectContext, name: str | None = None) -> dict:
    """Score one video; never raises: failures give ``status`` no_face/error and a reason.

    ``name`` replaces the path in the ``video`` field (the service shows the upload's name).
    """
    if ctx.crops:
        t0 = time.perf_counter()
        return _detect_crop(path, ctx, _base_record(name if name is not None else str(path), ctx),
                            _zero_timings(), t0)
    return _score_faces(path, ctx, name, *_extract(path, ctx))


def _zero_timings() -> dict:
    return {"decode": 0.0, "detect": 0.0, "align": 0.0, "model": 0.0}


def _extract(path, ctx: DetectContext) -> tuple:
    """The first stage of :func:`detect_video`: ``(faces or the error, when it began)``."""
    t0 = time.perf_counter()
    extract = ctx.extract if ctx.extract is not None else extract_faces
    # the model scores each face as it is found, while later frames are decoded
    nice = ctx.extract_cfg.face_nice if ctx.extract_cfg.overlap else 0
    early = (EarlyScores(ctx.scorer, nice=nice) if ctx.score_while_decoding and ctx.extract is None
             and _scores_each_face(ctx) else None)
    vf = None
    try:
        if early is None:
            vf = extract(str(path), ctx.detector, ctx.extract_cfg)
        else:
            vf = extract(str(path), ctx.detector, ctx.extract_cfg, on_face=early.add)
    except Exception as err:  # noqa: BLE001 - reported by the second stage
        vf = err
    finally:  # the thread always ends, also on an interrupt
        if early is not None:
            scores = early.finish(cancel=vf is None or isinstance(vf, Exception))
    if early is not None and not isinstance(vf, Exception):
        vf.early_scores, vf.early_busy = scores, early.busy
    return vf, t0


def _score_faces(path, ctx: DetectContext, name, vf, t0: float) -> dict:
    """The second stage: score the extracted faces; ``t0`` is when the first stage began (with
    stages overlapped across videos, ``total`` is then this video's time from its start)."""
    rec = _base_record(name if name is not None else str(path), ctx)
    timings = _zero_timings()
    try:
        if isinstance(vf, Exception):
            raise vf
        timings.update({k: float(v) for k, v in (getattr(vf, "timings", None) or {}).items()})
        rec["meta"] = _meta(vf, ctx)
        tracks = list(vf.tracks)
        face_list = [np.asarray(f, dtype=np.uint8) for t in tracks for f in t.faces]
        if not face_list:
            return _finish(_fail(rec, STATUS_NO_FACE, "no face found in the sampled frames"),
                           timings, t0)
        faces = np.stack(face_list)
        track_ids = np.concatenate([np.full(len(t.faces), t.track) for t in tracks])
        frame_idx = np.concatenate([np.asarray(t.frame_indices, dtype=np.int64) for t in tracks])
        boxes = [list(map(float, b)) for t in tracks for b in t.boxes]
        confs = [float(c) for t in tracks for c in t.confidences]
        known = (_known_scores(vf.early_scores, faces, frame_idx)
                 if getattr(vf, "early_scores", None) else None)
        tm = time.perf_counter()
        p, track_scores, video_p = _score(ctx, faces, track_ids, known)
        # the model's time: after the extraction, plus what it spent beside it (overlapped)
        timings["model"] = time.perf_counter() - tm + float(getattr(vf, "early_busy", 0.0))
    except Exception as err:  # noqa: BLE001 - one bad file never stops a batch
        status = _failure_status(err)
        log.debug("%s: %s", rec["video"], err, exc_info=status == STATUS_ERROR)
        return _finish(_fail(rec, status, f"{type(err).__name__}: {err}"
                             if status == STATUS_ERROR else str(err)), timings, t0)
    searched = getattr(vf, "frames_searched", None)
    rec.update(p_fake=float(video_p), n_faces=int(len(faces)), status=STATUS_OK, error="",
               n_frames=int(searched if searched is not None else len(np.unique(frame_idx))))
    rec["frames_with_face"] = int(len(np.unique(frame_idx)))
    rec["verdict"] = rec["label"] = verdict(rec["p_fake"], ctx.threshold, ctx.uncertain)
    q = quality.facts(path, faces, boxes, rec.get("meta") or {}, rec["n_frames"],
                      rec["frames_with_face"])
    rec.update({k: q[k] for k in ("face_px", "sharpness", "bpp")})
    rec["quality_warnings"] = "; ".join(q["warnings"])
    if getattr(vf, "partial", False):  # scored, on what decoded: the row says so
        rec.update(status=STATUS_PARTIAL, error=f"only {vf.frames_decoded} of "
                   f"{vf.frames_claimed} claimed frames decoded")
    if not np.isfinite(rec["p_fake"]):
        _fail(rec, STATUS_ERROR, "the model gave no finite score")
    if ctx.details:
        rec["tracks"] = track_scores
        rec["frames"] = [
            {"track": int(t), "frame_index": int(f), "p_fake": float(s),
             "box": boxes[i] if i < len(boxes) else None,
             "confidence": confs[i] if i < len(confs) else None}
            for i, (t, f, s) in enumerate(zip(track_ids, frame_idx, p))]
    _write_extras(rec, ctx, path, faces, track_ids, frame_idx, p)
    return _finish(rec, timings, t0)


def _detect_crop(path, ctx: DetectContext, rec: dict, timings: dict, t0: float) -> dict:
    """A face crop (an image file) scored as it is: decoded and resized to the model's face
    size by the shard reader's own function (so a crop scores as it would from shards), no
    detection, no re-framing."""
    size = int(getattr(ctx.extract_cfg, "face_size", 0) or schema.FACE_SIZE)
    try:
        try:  # whole, upright (EXIF), at least the smallest face size
            img = read_image(path, min_side=getattr(ctx.extract_cfg, "min_face", 1.0) or 1.0)
        except ImageReadError as err:
            return _finish(_fail(rec, STATUS_ERROR, f"not a readable image: {path} "
                                 f"({err.reason})"), timings, t0)
        w, h = img.width, img.height
        face = np.asarray(decode_face(img.data, size))
    except (OSError, ValueError) as err:
        return _finish(_fail(rec, STATUS_ERROR, f"not a readable image: {path} ({err})"),
                       timings, t0)
    except Exception as err:  # noqa: BLE001 - e.g. tf InvalidArgumentError; never stops a batch
        return _finish(_fail(rec, STATUS_ERROR, f"not a readable image: {path} "
                             f"({type(err).__name__})"), timings, t0)
    timings["decode"] = time.perf_counter() - t0
    rec["meta"] = {"width": int(w), "height": int(h), "crop": True}
    tm = time.perf_counter()
    try:
        p, tracks, video_p = _score(ctx, face[None], np.zeros(1, int))
    except Exception as err:  # noqa: BLE001 - one bad file never stops a batch
        return _finish(_fail(rec, STATUS_ERROR, f"{type(err).__name__}: {err}"), timings, t0)
    timings["model"] = time.perf_counter() - tm
    rec.update(p_fake=float(video_p), n_frames=1, n_faces=1, frames_with_face=1, status=STATUS_OK,
               error="")
    rec["verdict"] = rec["label"] = verdict(float(video_p), ctx.threshold, ctx.uncertain)
    if ctx.details:
        rec["tracks"] = tracks
        rec["frames"] = [{"track": 0, "frame_index": 0, "p_fake": float(p[0]),
                          "box": [0.0, 0.0, float(w), float(h)], "confidence": None}]
    _write_extras(rec, ctx, path, face[None], np.zeros(1, int), np.zeros(1, int), p)
    return _finish(rec, timings, t0)


def _finish(rec: dict, timings: dict, t0: float) -> dict:
    timings["total"] = time.perf_counter() - t0
    rec["timings"] = {k: round(float(v), 4) for k, v in timings.items()}
    return rec


def explainer_for(scorer):
    """``(model scorer, GradCAM)`` for a frame model with a Keras model, built once and kept
    on the scorer; None for clip models, stackers and SavedModel-only scorers."""
    if not isinstance(scorer, models.ModelScorer) or isinstance(scorer, models.ClipScorer):
        return None
    cam = getattr(scorer, "_explainer", None)
    if cam is None:
        keras_model = getattr(scorer.scorer, "model", None)
        if keras_model is None:
            return None
        cam = scorer._explainer = explain_mod.GradCAM(keras_model)
        log.info("explanations: Grad-CAM of %s on layer %r", scorer.name, cam.layer.name)
    return scorer, cam


def _explain(rec, ctx, path, faces, track_ids, frame_idx):
    """Grad-CAM maps of the faces as the model saw them, the per-face ``attention`` and the
    overlay files; returns the overlays (uint8 RGB) or None when the model cannot say."""
    found = explainer_for(ctx.scorer)
    if found is None:
        log.warning("%s: no explanation: %s is not a frame model with a Keras model (clip "
                    "models, stackers and bare SavedModels are not explained)", rec["video"],
                    ctx.model_name)
        return None
    scorer, cam = found
    seen = scorer.reframe(faces)
    with scorer._lock:
        heat = cam(seen)
    overlays = np.stack([explain_mod.overlay(f, h) for f, h in zip(seen, heat)])
    if ctx.details and rec.get("frames"):
        for entry, h, ev in zip(rec["frames"], heat, cam.evidence):
            entry["attention"] = {**explain_mod.summarize(h, evidence=bool(ev)),
                                  "layer": cam.layer.name}
    if ctx.explain_dir:
        artifacts.write_overlays(ctx.explain_dir, path, overlays, track_ids, frame_idx)
    return overlays


def _write_extras(rec, ctx, path, faces, track_ids, frame_idx, p) -> None:
    """Plots, face JPEGs, explanations and thumbnails; a failure here is logged, never fatal."""

    overlays = None
    if ctx.explain or ctx.explain_dir:
        try:
            overlays = _explain(rec, ctx, path, faces, track_ids, frame_idx)
        except Exception as err:  # noqa: BLE001 - best-effort beside the verdict
            log.warning("%s: could not explain the scores: %s: %s", rec["video"],
                        type(err).__name__, err)
    try:
        if ctx.faces_dir:
            artifacts.write_faces(ctx.faces_dir, path, faces, track_ids, frame_idx)
        if ctx.plot_dir:
            artifacts.write_plot(Path(ctx.plot_dir) / f"{artifacts.output_stem(path)}.png",
                                 rec, frame_idx, p, track_ids)
        if ctx.plot_png:
            rec["plot_png"] = artifacts.plot_png_base64(rec, frame_idx, p, track_ids)
        if ctx.thumbnails:
            rec["thumbnails"] = artifacts.thumbnails(faces, track_ids, frame_idx, p,
                                                     ctx.thumbnails, ctx.thumb_size, overlays)
            for thumb in rec["thumbnails"]:  # each face's own verdict, by the video's rule
                thumb["label"] = verdict(thumb["p_fake"], ctx.threshold, ctx.uncertain)
    except Exception as err:  # noqa: BLE001 - outputs beside the verdict are best-effort
        log.warning("%s: could not write plot/faces: %s", rec["video"], err)


def iter_detect(items: Iterable, ctx: DetectContext) -> Iterator[dict]:
    """Stream results for :class:`dfd_app.detect.inputs.InputItem` objects (or plain paths),
    in their order. The next video's frames are decoded and its faces found (in a thread:
    PyAV, the face detector and the model all release the GIL) while this one's faces are
    scored: the model's time hides behind the next decode where cores are free (on 2 busy
    cores: 0.95x the time per clip, docs/benchmarks.md)."""
    def scored(stage):  # (path, future of its first stage) -> the video's result
        return _score_faces(stage[0], ctx, None, *stage[1].result())

    # the next video's extraction already runs beside this one's scoring, so a video scores its
    # faces while it decodes only when none comes after it (measured: no gain on a folder)
    overlapped = replace(ctx, score_while_decoding=False)
    queue_ = iter(items)
    item = next(queue_, _DONE)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dfd-extract") as pool:
        ahead = None  # the video whose faces are being found
        while item is not _DONE:
            following = next(queue_, _DONE)
            path, error = (item, "") if isinstance(item, (str, Path)) else (item.path, item.error)
            if error or ctx.crops:
                if ahead is not None:
                    yield scored(ahead)
                    ahead = None
                yield (_finish(_fail(_base_record(str(path), ctx), STATUS_ERROR, error), {},
                               time.perf_counter()) if error else detect_video(path, ctx))
                item = following
                continue
            stage = (path, pool.submit(_extract, path,
                                       ctx if following is _DONE else overlapped))
            if ahead is not None:
                yield scored(ahead)
            ahead = stage
            item = following
        if ahead is not None:
            yield scored(ahead)
