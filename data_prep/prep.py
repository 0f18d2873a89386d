"""The ``dfd prep`` run: manifest in, face shards out — parallel, resumable, failure-tolerant.

* Videos go to a pool of worker processes (default: one per core); each worker builds its
  face detector once and returns encoded records. The parent alone writes shards, through
  :class:`data_prep.shard_writer.ShardWriter`, so a shard is never shared between writers.
* Face-crop image sets (tar archives or folders of JPEGs) are read in the parent: each image
  becomes a one-frame record holding the source JPEG bytes unchanged (no re-encoding); the
  crops of one video (a manifest ``video`` key) become one multi-frame record
  (:mod:`data_prep.crop_videos`).
* Resumable: items already in a complete shard, or already listed in ``failures.csv``, are
  skipped on a re-run (``retry_failures`` retries the latter). A kill loses at most the open
  shard, which is never mistaken for a complete one; shards are also committed every
  ``commit_seconds`` so little work is ever at stake.
* Every failing item (unreadable file, no face, bad image) gets a row in ``failures.csv`` with
  its reason, and the run carries on.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import os
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep import crop_videos, faces, manifests, shard_writer
from data_prep.extract import ExtractConfig, NoFaceError, extract_faces
from data_prep.sampling import VideoReadError
from dfd import config as dfd_config
from dfd import framing, progress, schema

log = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
MANIFEST_FILE = "manifest.csv"
CONFIG_FILE = "prep_config.json"
FAILURE_COLUMNS = ["video_id", "path", "member", "label", "status", "reason"]


@dataclass
class PrepConfig:
    """Options of one ``dfd prep`` run (saved as ``prep_config.json`` in the output)."""

    sources: list[str] = field(default_factory=list)
    out_dir: str = "shards"
    layout: str = "auto"
    workers: int = 0  # 0 = one per CPU core
    n_frames: int = 32
    sampler: str = "keyframe"
    stride: int | None = None
    detector: str = "default"
    detect_side: int = 640
    all_faces: bool = False
    face_size: int = 256
    margin: float = framing.MESONET_MARGIN  # framing of the crops cut from videos (dfd.framing)
    crop_margin: float | None = None  # framing of a crop set's given images, when known
    shard_records: int = 64
    image_shard_records: int = 2000
    commit_seconds: float = 120.0
    retry_failures: bool = False
    limit: int | None = None

    def __post_init__(self):
        if self.crop_margin is not None:
            framing.check_margin(self.crop_margin, "crop_margin")

    def extract_config(self):

        return ExtractConfig(
            n_frames=self.n_frames, sampler=self.sampler, stride=self.stride,
            detect_side=self.detect_side, all_faces=self.all_faces,
            face_size=self.face_size, margin=self.margin,
        )


@dataclass
class PrepResult:
    out_dir: Path
    written: int
    failed: int
    skipped: int
    faces: int
    failures: pd.DataFrame


# ------------------------------------------------------------------ worker side

_DETECTOR = None
_EXTRACT_CFG = None


def _init_worker(detector_name: str, detect_side: int, extract_cfg) -> None:
    global _DETECTOR, _EXTRACT_CFG
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    _DETECTOR = faces.get_detector(detector_name, detect_side=detect_side)
    _EXTRACT_CFG = extract_cfg


def video_records(item: dict, detector, extract_cfg) -> list[schema.FaceRecord]:
    """Face records (one per track) of one manifest video row; raises on failure."""

    vf = extract_faces(item["path"], detector, extract_cfg)
    return [
        schema.FaceRecord(
            video_id=item["video_id"], label=int(item["label"]), group=str(item["group"]),
            source=str(item["source"]), split=str(item.get("split", "") or ""),
            track=t.track, faces=[schema.encode_png(f) for f in t.faces],
            frame_indices=list(t.frame_indices), boxes=[tuple(b) for b in t.boxes],
            confidences=list(t.confidences), fps=vf.fps, frame_count=vf.frame_count,
            sampler=vf.sampler, width=vf.width, height=vf.height,
            original=str(item.get("original", "") or ""),
        )
        for t in vf.tracks
    ]


def _process_video(item: dict) -> dict:
    """Worker entry point: never raises; returns encoded records or a failure reason."""

    try:
        recs = video_records(item, _DETECTOR, _EXTRACT_CFG)
        return {"item": item, "records": [(schema.encode_record(r), len(r.faces), r.track)
                                          for r in recs]}
    except NoFaceError as err:
        return {"item": item, "status": "no_face", "reason": str(err)}
    except VideoReadError as err:
        return {"item": item, "status": "unreadable", "reason": str(err)}
    except Exception as err:  # noqa: BLE001 - one bad video never stops the batch
        log.debug("video %s failed", item["path"], exc_info=True)
        return {"item": item, "status": "error", "reason": f"{type(err).__name__}: {err}"}


# ------------------------------------------------------------------ image sets


def _image_record(item: dict, data: bytes) -> schema.FaceRecord:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{len(data)} bytes are not a decodable image")
    h, w = img.shape[:2]
    return schema.FaceRecord(
        video_id=item["video_id"], label=int(item["label"]), group=str(item["group"]),
        source=str(item["source"]), split=str(item.get("split", "") or ""),
        faces=[data], frame_indices=[0], boxes=[(0.0, 0.0, float(w), float(h))],
        confidences=[1.0], frame_count=1, sampler="crop", width=w, height=h,
        original=str(item.get("original", "") or ""),
    )


def _iter_images(items: pd.DataFrame):
    """Yield ``(item, bytes | None, reason)`` for image rows, reading each tar once."""
    for path, rows in items.groupby("path", sort=False):
        member_rows = rows[rows["member"].fillna("") != ""]
        if len(member_rows):
            try:
                with tarfile.open(path) as tar:
                    for item in member_rows.to_dict("records"):
                        try:
                            fh = tar.extractfile(item["member"])
                            yield item, fh.read(), ""
                        except (KeyError, AttributeError, tarfile.TarError, OSError) as err:
                            yield item, None, f"cannot read {item['member']} from {path}: {err}"
            except (tarfile.TarError, OSError) as err:
                for item in member_rows.to_dict("records"):
                    yield item, None, f"cannot open archive {path}: {err}"
        for item in rows[rows["member"].fillna("") == ""].to_dict("records"):
            try:
                yield item, Path(item["path"]).read_bytes(), ""
            except OSError as err:
                yield item, None, f"cannot read {item['path']}: {err}"


# ------------------------------------------------------------------ the run


class _FailureLog:
    def __init__(self, path: Path):
        new = not path.exists()
        self._fh = open(path, "a", newline="")  # noqa: SIM115 - kept open for the run
        self._w = csv.DictWriter(self._fh, FAILURE_COLUMNS)
        if new:
            self._w.writeheader()
        self.count = 0

    def add(self, item: dict, status: str, reason: str) -> None:
        self._w.writerow({"video_id": item["video_id"], "path": item["path"],
                          "member": item.get("member", ""), "label": item["label"],
                          "status": status, "reason": reason})
        self._fh.flush()
        self.count += 1
        log.warning("%s: %s (%s)", item["video_id"], status, reason)

    def close(self):
        self._fh.close()


def read_failures(out_dir: str | Path) -> pd.DataFrame:
    path = Path(out_dir) / FAILURES_FILE
    if not path.exists():
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _progress(total: int, desc: str):
    """A bar with a total and ETA (off with ``--no-progress`` or off a terminal)."""
    return progress.bar(total, desc, "item", **({"disable": True} if total == 0 else {}))


def run_prep(cfg: PrepConfig, manifest=None) -> PrepResult:
    """Run ``dfd prep``. ``manifest`` (a loaded :class:`data_prep.manifests.Manifest`) may be
    given instead of ``cfg.sources``."""

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        if not cfg.sources:
            raise ValueError("no sources given: name video folders, a CSV or a crop set")
        manifest = manifests.merge_manifests(
            [manifests.load_manifest(s, layout=cfg.layout) for s in cfg.sources])
    items = manifest.items
    if len(manifest.problems):
        manifest.problems.to_csv(out / "manifest_problems.csv", index=False)
    if cfg.limit:  # the first N records: a video's crops are kept or left out together
        rec = crop_videos.record_ids(items)
        items = items[rec.isin(rec.unique()[: cfg.limit])]
    manifests.write_manifest(items, out / MANIFEST_FILE)
    dfd_config.save_config(cfg, out / CONFIG_FILE)

    shard_writer.cleanup_incomplete(out)
    done = shard_writer.finished_ids(out)
    failed_before = read_failures(out)
    if cfg.retry_failures and len(failed_before):
        kept = failed_before[~failed_before["video_id"].isin(items["video_id"])]
        kept.to_csv(out / FAILURES_FILE, index=False)
    else:
        done |= set(failed_before["video_id"])
    todo = items[~(items["video_id"].isin(done) | crop_videos.record_ids(items).isin(done))]
    skipped = len(items) - len(todo)
    if skipped:
        log.info("resuming: %d of %d items already done, %d to go", skipped, len(items), len(todo))

    failures = _FailureLog(out / FAILURES_FILE)
    written = Counter()
    t0 = time.monotonic()
    try:
        images = todo[todo["kind"] == "image"]
        if len(images):
            with shard_writer.ShardWriter(out, "crops", max_records=cfg.image_shard_records) as w, \
                    _progress(len(images), "crops") as bar:
                for unit in crop_videos.crop_units(images, _iter_images):
                    bar.update(len(unit))
                    good = []
                    for item, data, reason in unit:
                        if data is None:
                            failures.add(item, "unreadable", reason)
                            continue
                        try:
                            good.append((item, _image_record(item, data)))
                        except ValueError as err:
                            failures.add(item, "unreadable",
                                         f"{item['member'] or item['path']}: {err}")
                    if good:
                        w.add(crop_videos.merge_records(good))
                        written["items"] += 1
                        written["faces"] += len(good)
        videos = todo[todo["kind"] == "video"]
        if len(videos):
            _run_videos(cfg, videos, out, failures, written)
    finally:
        failures.close()
        fails = read_failures(out)
        shard_writer.build_index(
            out, items=len(items), failures=len(fails),
            failures_by_status=dict(Counter(fails["status"])),
            labels=dict(Counter(str(x) for x in items["label"])),
            sources=[str(s) for s in cfg.sources], sampler=cfg.sampler, detector=cfg.detector,
            face_margin=index_margin(cfg, set(items["kind"]) if "kind" in items else set()),
        )
    log.info("prep done in %.1fs: %d items written (%d faces), %d failed, %d skipped -> %s",
             time.monotonic() - t0, written["items"], written["faces"], failures.count, skipped, out)
    return PrepResult(out, written["items"], failures.count, skipped, written["faces"], fails)


def index_margin(cfg: PrepConfig, kinds: set) -> float | None:
    """The face framing the shards hold (``face_margin`` in ``index.json``): the video margin,
    the crop set's ``crop_margin``, or None when unknown or mixed."""
    margins = set()
    if "video" in kinds:
        margins.add(float(cfg.margin))
    if "image" in kinds:
        margins.add(None if cfg.crop_margin is None else float(cfg.crop_margin))
    if len(margins) == 1:
        return margins.pop()
    if len(margins) > 1:
        log.warning("shards mix face crops framed at margins %s; index face_margin left unknown",
                    sorted(margins, key=str))
    return None


def _run_videos(cfg: PrepConfig, videos: pd.DataFrame, out: Path, failures: _FailureLog,
                written: Counter) -> None:
    workers = cfg.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(videos)))
    extract_cfg = cfg.extract_config()
    rows = videos.to_dict("records")
    with shard_writer.ShardWriter(out, "videos", max_records=cfg.shard_records) as w, \
            _progress(len(rows), "videos") as bar:

        def handle(res: dict) -> None:
            bar.update()
            if "records" not in res:
                failures.add(res["item"], res["status"], res["reason"])
                return
            for data, n_faces, track in res["records"]:
                w.add_serialized(data, res["item"]["video_id"], n_faces, track, autoflush=False)
                written["faces"] += n_faces
            written["items"] += 1
            w.maybe_flush(cfg.commit_seconds)

        if workers == 1:
            _init_worker(cfg.detector, cfg.detect_side, extract_cfg)
            for row in rows:
                handle(_process_video(row))
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker,
                      initargs=(cfg.detector, cfg.detect_side, extract_cfg)) as pool:
            for res in pool.imap_unordered(_process_video, rows):
                handle(res)
