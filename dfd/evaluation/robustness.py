"""Scores of held-out videos after what the internet does to video (compression, lost
resolution, blur): how much of a model's ROC-AUC survives an upload.

A condition is named ``KIND`` or ``KIND:VALUE``:

* ``stored``: the faces as the shards hold them;
* ``h264:CRF``: the faces of one video coded with libx264 at ``CRF`` as one clip, frames
  predicted from each other (:func:`dfd.training.augment.h264`); FaceForensics++'s ``c23``
  and ``c40`` versions are CRF 23 and 40;
* ``jpeg:QUALITY``: each face JPEG-coded at ``QUALITY``;
* ``shrink:K``: each face shrunk ``K`` times (area) and scaled back (bilinear);
* ``blur:SIGMA``: Gaussian blur of ``SIGMA`` pixels.

Faces are degraded at the size the shards store, then framed and sized for the model as
``dfd predict`` does; a video's score is the mean of its faces' P(fake) (as ``dfd predict``),
so a ``stored`` table equals ``dfd predict``'s up to float rounding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np
import pandas as pd

from dfd import framing, readers, schema
from dfd.inference.frames import as_scorer, input_size, score_faces
from dfd.scores import SOURCE_COLUMN, STATUS_OK
from dfd.training.augment import h264

log = logging.getLogger(__name__)

#: kind -> (what its value is, allowed range, integer?)
KINDS = {
    "stored": None,
    "h264": ("CRF", (0, 51), True),
    "jpeg": ("quality", (1, 100), True),
    "shrink": ("factor", (2, 16), True),
    "blur": ("sigma", (0.1, 20.0), False),
}
#: the conditions the shipped default is chosen on and reported under: the faces as stored
#: and re-coded at FaceForensics++'s two compression levels
UPLOAD_CONDITIONS = ("stored", "h264:23", "h264:40")


def parse_condition(text: str) -> tuple[str, float | int | None]:
    """``"h264:35"`` -> ``("h264", 35)``; a ValueError names a bad kind or value."""
    kind, _, value = str(text).strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown condition {text!r}: its kind must be one of {sorted(KINDS)}")
    spec = KINDS[kind]
    if spec is None:
        if value:
            raise ValueError(f"condition {text!r}: {kind!r} takes no value")
        return kind, None
    what, (lo, hi), integer = spec
    try:
        v = int(value) if integer else float(value)
    except ValueError:
        raise ValueError(f"condition {text!r}: {kind} needs a {what} "
                         f"({'an integer ' if integer else ''}in [{lo}, {hi}]) after ':', "
                         f"got {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"condition {text!r}: {what} must be in [{lo}, {hi}], got {v}")
    return kind, v


def degrade(faces: np.ndarray, condition: str) -> np.ndarray:
    """One video's faces (uint8 ``[N, H, W, 3]`` RGB) under ``condition``."""
    kind, value = parse_condition(condition)
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be uint8 [N, H, W, 3], got {faces.dtype} {faces.shape}")
    if kind == "stored" or not len(faces):
        return faces
    if kind == "h264":
        return h264(faces, value)
    out = np.empty_like(faces)
    h, w = faces.shape[1:3]
    for i, f in enumerate(faces):
        if kind == "jpeg":
            _, buf = cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]),
                                  [cv2.IMWRITE_JPEG_QUALITY, value])
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        elif kind == "shrink":
            small = cv2.resize(f, (max(1, w // value), max(1, h // value)),
                               interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        else:  # blur
            out[i] = cv2.GaussianBlur(f, (0, 0), value)
    return out


@dataclass
class HeldVideos:
    """Videos of shards held in memory: their faces (one array per video, its tracks joined
    in record order, ``tracks`` the track of each face), labels and sources, and the shards'
    framing."""

    video_ids: list[str]
    labels: np.ndarray
    sources: list[str]
    faces: list[np.ndarray]
    tracks: list[np.ndarray]
    splits: list[str]
    face_margin: float | None = None
    face_centre: float | None = 0.0
    condition: str = "stored"

    def __len__(self) -> int:
        return len(self.video_ids)

    def select(self, split: str | None = None, only_source=None) -> HeldVideos:
        """The videos of one ``split`` and/or source (``only_source``: a name as
        :func:`dfd.schema.match_sources` takes it, or a list of stored names)."""
        if isinstance(only_source, str):
            wanted = set(schema.match_sources(only_source, sorted(set(self.sources))))
            if not wanted:
                raise ValueError(f"no video of source {only_source!r}; these hold "
                                 f"{sorted(set(self.sources))}")
        else:
            wanted = None if only_source is None else set(only_source)
        keep = [i for i in range(len(self))
                if (split is None or self.splits[i] == split)
                and (wanted is None or self.sources[i] in wanted)]
        return replace(self, **{k: [getattr(self, k)[i] for i in keep] for k in
                                ("video_ids", "sources", "faces", "tracks", "splits")},
                       labels=self.labels[keep])

    def degraded(self, condition: str) -> HeldVideos:
        """The same videos under ``condition`` (from the stored faces only)."""
        if self.condition != "stored":
            raise ValueError(f"videos already under {self.condition!r}: degrade the stored ones")
        parse_condition(condition)
        return replace(self, faces=[degrade(f, condition) for f in self.faces],
                       condition=condition)


def load_videos(shards, split: str | None = None, only_source=None) -> HeldVideos:
    """The labelled videos of ``shards`` (one ``split`` and/or the records whose source is
    ``only_source``, a short name such as ``ffpp_faces`` or the stored ``csv:ffpp_faces``),
    sorted by id, at the size the shards store; records of unknown label are left out."""
    import tensorflow as tf

    only = readers.resolve_source(shards, only_source) if isinstance(only_source, str) \
        else only_source
    faces: dict[str, list[np.ndarray]] = {}
    tracks: dict[str, list[int]] = {}
    meta: dict[str, tuple[int, str, str]] = {}
    ds = readers.records(shards, split=split, keep=readers.from_source(only))
    for rec in ds.as_numpy_iterator():
        vid = rec["video_id"].decode()
        got, track = faces.setdefault(vid, []), tracks.setdefault(vid, [])
        for data in rec[schema.FACE]:
            try:
                got.append(tf.io.decode_image(data, channels=3, expand_animations=False)
                           .numpy())
                track.append(int(rec["track"]))
            except Exception as err:  # noqa: BLE001 - a damaged face: skipped, counted below
                log.warning("%s: a face could not be decoded (%s)", vid, err)
        meta[vid] = (int(rec["label"]), rec[schema.SOURCE].decode(), rec[schema.SPLIT].decode())
    ids = sorted(v for v in faces if faces[v])
    if len(ids) < len(faces):
        log.warning("%d video(s) had no decodable face and are left out",
                    len(faces) - len(ids))
    return HeldVideos(ids, np.array([meta[v][0] for v in ids], int),
                      [meta[v][1] for v in ids], [np.stack(faces[v]) for v in ids],
                      [np.array(tracks[v], int) for v in ids], [meta[v][2] for v in ids],
                      framing.shards_face_margin(shards), framing.shards_face_centre(shards))


def score_videos(model, videos: HeldVideos, model_name: str | None = None,
                 batch_size: int = 64) -> pd.DataFrame:
    """A video table (``video_id, label, p_fake, n_faces, status, model, condition, source``)
    of ``model`` on ``videos``, as ``dfd predict`` makes it: faces re-framed to the model's
    framing when the shards record a wider one and resized to its input; a video's score is
    its most suspicious track's mean P(fake)."""
    scorer = as_scorer(model, batch_size)
    name = model_name or scorer.name
    size = input_size(scorer)
    refit = framing.reframer(getattr(scorer, "face_margin", None), videos.face_margin, name,
                             getattr(scorer, "face_centre", 0.0), videos.face_centre)
    rows = []
    for vid, lab, src, faces, track in zip(videos.video_ids, videos.labels, videos.sources,
                                           videos.faces, videos.tracks):
        x = refit(faces, size=size[0] if size else None) if refit else faces
        if size and tuple(x.shape[1:3]) != size:
            x = readers.resize_faces(x, size[0]).numpy()
        p = score_faces(scorer, x, batch_size)
        video = max(float(np.mean(p[track == t])) for t in np.unique(track))
        rows.append({"video_id": vid, "label": int(lab), "p_fake": video,
                     "n_faces": len(p), "status": STATUS_OK, "model": name,
                     "condition": videos.condition, SOURCE_COLUMN: src})
    return pd.DataFrame(rows)
