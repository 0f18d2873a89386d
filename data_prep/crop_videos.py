"""Crops of one video written as ONE multi-frame record (``dfd prep`` on crop sets).

A crop set whose list has a ``frame`` column (FaceForensics++ crops: ten frames per video)
gets a ``video`` key per crop in the manifest (:mod:`data_prep.manifests`). Writing each crop
as its own record would make ten near copies of one video ten test cases: ROC-AUC over
records would count a video ten times and its confidence interval would be far too narrow.
So the crops of one video become one record, id = the ``video``, faces in ``frame`` order
(each the source JPEG bytes, as for single crops), and ``dfd predict`` / evaluation, which
score a record as one video, are per video by construction. Crops without a ``video`` (DFDC
crops: one crop per video) stay one record each, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from dfd import schema

log = logging.getLogger(__name__)

Crop = tuple  # (item dict, bytes | None, reason)


def _video(item) -> str:
    return str(item.get("video", "") or "")


def record_ids(items: pd.DataFrame) -> pd.Series:
    """The shard record id of each item: its ``video`` when it has one, else its ``video_id``."""
    if "video" not in items.columns:
        return items["video_id"].astype(str)
    video = items["video"].fillna("").astype(str)
    return video.where(video != "", items["video_id"].astype(str))


def frame_number(item, default: int = 0) -> int:
    """The crop's ``frame`` as an int (``default`` when absent or not a number)."""
    try:
        return int(str(item.get("frame", "")).strip())
    except ValueError:
        return default


def crop_units(images: pd.DataFrame,
               iter_images: Callable[[pd.DataFrame], Iterable[Crop]]) -> Iterator[list[Crop]]:
    """The crops of ``images`` in the units written as one record each: a crop alone, or
    every crop of one video in frame order. ``iter_images(rows)`` reads the bytes
    (``(item, bytes | None, reason)`` per row); a video's crops are read consecutively, so
    only one video is held in memory at a time (more only if its crops span archives)."""
    rec = record_ids(images)
    grouped = images["video"].fillna("").astype(str) != "" if "video" in images.columns \
        else pd.Series(False, index=images.index)
    for crop in iter_images(images[~grouped]):
        yield [crop]
    rows = images[grouped].copy()
    if rows.empty:
        return
    rows["_frame"] = [frame_number(r) for r in rows.to_dict("records")]
    rows["_rec"] = rec[grouped]
    rows = rows.sort_values(["path", "_rec", "_frame"], kind="stable")
    expected = rows["_rec"].value_counts().to_dict()
    pending: dict[str, list[Crop]] = {}
    for crop in iter_images(rows.drop(columns=["_frame", "_rec"])):
        vid = _video(crop[0])
        pending.setdefault(vid, []).append(crop)
        if len(pending[vid]) == expected[vid]:
            yield sorted(pending.pop(vid), key=lambda c: frame_number(c[0]))
    for vid, crops in pending.items():  # only if a reader skipped rows
        log.warning("video %s: %d of %d crops read", vid, len(crops), expected[vid])
        yield sorted(crops, key=lambda c: frame_number(c[0]))


def merge_records(parts: list[tuple[dict, schema.FaceRecord]]) -> schema.FaceRecord:
    """One record of a unit's good crops: a single crop without a video as it is; the crops
    of a video as one multi-frame record (id = the video, frame indices = frame numbers)."""
    if not parts:
        raise ValueError("no crops to merge")
    item, first = parts[0]
    video = _video(item)
    if len(parts) == 1 and not video:
        return first
    faces, frames, boxes, confs, marks, crop_boxes = [], [], [], [], [], []
    for pos, (it, r) in enumerate(parts):
        faces += list(r.faces)
        frames.append(frame_number(it, pos))
        boxes += list(r.boxes)
        confs += list(r.confidences)
        # optional per-face landmarks (dfd.schema): a crop without them gets "absent" rows
        marks += list(r.landmarks) if r.landmarks else [None] * len(r.faces)
        crop_boxes += list(r.crop_boxes) if r.crop_boxes else [None] * len(r.faces)
    if all(m is None for m in marks):
        marks, crop_boxes = [], []
    return schema.FaceRecord(
        video_id=video or first.video_id, label=first.label, group=first.group,
        source=first.source, split=first.split, original=first.original,
        faces=faces, frame_indices=frames, boxes=boxes, confidences=confs,
        landmarks=marks, crop_boxes=crop_boxes, frame_count=max(frames) + 1,
        sampler=f"crops:{len(faces)}",
        width=first.width, height=first.height,
    )
