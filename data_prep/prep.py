"""The ``dfd prep`` run: manifest in, face shards out — parallel, resumable, failure-tolerant.

* Videos go to an engine (:mod:`data_prep.engines`): this process, a local process pool
  (default: one worker per core) or a Dask cluster (``engine="dask"``); each worker builds its
  face detector once and returns encoded records. The parent alone writes shards, through
  :class:`data_prep.shard_writer.ShardWriter`, so a shard is never shared between writers.
* Shards are filled in manifest order whatever order the videos finish in, so the output is
  identical whatever the engine and the worker count (same records, same order, same shards).
* Face-crop image sets (tar archives or folders of JPEGs) are read in the parent: each image
  becomes a one-frame record holding the source JPEG bytes unchanged (no re-encoding); the
  crops of one video (a manifest ``video`` key) become one multi-frame record
  (:mod:`data_prep.crop_videos`).
* Restartable after any kill (see :mod:`data_prep.journal`): every finished video is journaled
  (``journal/``, atomic files) before it goes into a shard, every failure is appended to
  ``failures.csv`` and fsynced, and every other file is written atomically. A re-run skips the
  items in complete shards or in ``failures.csv`` (``retry_failures`` retries the latter),
  takes the journaled videos as they are, does the rest and writes ``index.json``; its shards
  hold the same records as an unbroken run's.
* Every failing item (unreadable file, no face, bad image) gets a row in ``failures.csv`` with
  its reason, and the run carries on.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from data_prep import crop_videos, engines, faces, journal, manifests, shard_writer
from data_prep.extract import ExtractConfig, NoFaceError, extract_faces
from data_prep.landmarks import CropLandmarker
from data_prep.sampling import VideoReadError
from dfd import config as dfd_config
from dfd import framing, progress, schema
from dfd.labels import REAL

log = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"
MANIFEST_FILE = "manifest.csv"
CONFIG_FILE = "prep_config.json"
FAILURE_COLUMNS = journal.FAILURE_COLUMNS


@dataclass
class PrepConfig:
    """Options of one ``dfd prep`` run (saved as ``prep_config.json`` in the output)."""

    sources: list[str] = field(default_factory=list)
    out_dir: str = "shards"
    layout: str = "auto"
    workers: int = 0  # 0 = one per CPU core
    engine: str = "process"  # "process" (this machine) or "dask" (data_prep.engines)
    scheduler: str | None = None  # engine "dask": an existing cluster's address or file
    n_frames: int = 32
    sampler: str = "keyframe"
    stride: int | None = None
    detector: str = "default"
    detect_side: int = 640
    all_faces: bool = False
    face_size: int = schema.FACE_SIZE
    margin: float = framing.MESONET_MARGIN  # framing of the crops cut from videos (dfd.framing)
    crop_margin: float | None = None  # framing of a crop set's given images, when known
    shard_records: int = 64
    image_shard_records: int = 2000
    commit_seconds: float = 120.0  # unused: finished videos are journaled (kept for old configs)
    retry_failures: bool = False
    limit: int | None = None
    # crop sets: run the face detector on each crop for its landmarks (data_prep.landmarks):
    # "real" (what self-blended fakes use; half the cost), "all" or "none"
    crop_landmarks: str = "real"

    def __post_init__(self):
        if self.engine not in engines.ENGINES:
            raise ValueError(f"engine must be one of {engines.ENGINES}, got {self.engine!r}")
        if self.scheduler and self.engine != "dask":
            raise ValueError(f"a scheduler address ({self.scheduler!r}) needs engine 'dask', "
                             f"not {self.engine!r}")
        if self.crop_landmarks not in ("real", "all", "none"):
            raise ValueError(f"crop_landmarks must be 'real', 'all' or 'none', got "
                             f"{self.crop_landmarks!r}")
        if self.crop_margin is not None:
            framing.check_margin(self.crop_margin, "crop_margin")

    def extract_config(self):
        """The face extraction of each video. With several workers (a pool or a cluster fills
        every core already) the decoder gets one thread and no decode-ahead thread: measured
        1.37 CPU-s per 1080p DFDC clip against 1.71 with FFmpeg's own threading (docs/faces.md)."""
        parallel = self.workers != 1 or self.engine == "dask"
        return ExtractConfig(
            n_frames=self.n_frames, sampler=self.sampler, stride=self.stride,
            detect_side=self.detect_side, all_faces=self.all_faces,
            face_size=self.face_size, margin=self.margin,
            decode_threads=1 if parallel else 0, overlap=not parallel,
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


@dataclass
class VideoJob:
    """The per-video job an engine runs: ``load()`` once per worker (the face detector), then
    ``job(item, detector)`` per video -> encoded records or a failure reason."""

    detector: str
    detect_side: int
    extract: object  # data_prep.extract.ExtractConfig

    def load(self):
        return faces.get_detector(self.detector, detect_side=self.detect_side)

    def __call__(self, item: dict, detector) -> dict:
        return process_video(item, detector, self.extract)


def video_records(item: dict, detector, extract_cfg) -> list[schema.FaceRecord]:
    """Face records (one per track) of one manifest video row; raises on failure."""

    vf = extract_faces(item["path"], detector, extract_cfg)
    return [
        schema.FaceRecord(
            video_id=item["video_id"], label=int(item["label"]), group=str(item["group"]),
            source=str(item["source"]), split=str(item.get("split", "") or ""),
            track=t.track, faces=[schema.encode_png(f) for f in t.faces],
            frame_indices=list(t.frame_indices), boxes=[tuple(b) for b in t.boxes],
            confidences=list(t.confidences), landmarks=t.landmarks, crop_boxes=t.crop_boxes,
            fps=vf.fps, frame_count=vf.frame_count,
            sampler=vf.sampler, width=vf.width, height=vf.height,
            original=str(item.get("original", "") or ""),
        )
        for t in vf.tracks
    ]


def process_video(item: dict, detector, extract_cfg) -> dict:
    """One video in a worker: never raises; returns encoded records or a failure reason."""

    try:
        recs = video_records(item, detector, extract_cfg)
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


def iter_images(items: pd.DataFrame):
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


def read_failures(out_dir: str | Path) -> pd.DataFrame:
    """The rows of ``failures.csv`` (empty, headerless or cut-short files are handled)."""
    rows = journal.read_failure_rows(Path(out_dir) / FAILURES_FILE)
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS, dtype=str)


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
        journal.atomic_write(out / "manifest_problems.csv",
                             manifest.problems.to_csv(index=False))
    if cfg.limit:  # the first N records: a video's crops are kept or left out together
        rec = crop_videos.record_ids(items)
        items = items[rec.isin(rec.unique()[: cfg.limit])]
    manifests.write_manifest(items, out / (MANIFEST_FILE + ".tmp"))
    os.replace(out / (MANIFEST_FILE + ".tmp"), out / MANIFEST_FILE)
    dfd_config.save_config(cfg, out / CONFIG_FILE)

    shard_writer.cleanup_incomplete(out)
    done = shard_writer.finished_ids(out)
    retry = set(items["video_id"]) if cfg.retry_failures else set()
    failures = journal.FailureLog(out / FAILURES_FILE, drop_ids=retry)
    done |= {r["video_id"] for r in journal.read_failure_rows(out / FAILURES_FILE)}
    todo = items[~(items["video_id"].isin(done) | crop_videos.record_ids(items).isin(done))]
    skipped = len(items) - len(todo)
    if skipped:
        log.info("resuming: %d of %d items already done, %d to go", skipped, len(items), len(todo))

    written = Counter()
    t0 = time.monotonic()
    try:
        images = todo[todo["kind"] == "image"]
        if len(images):
            landmarker = CropLandmarker(cfg.detector) if cfg.crop_landmarks != "none" else None
            with shard_writer.ShardWriter(out, "crops", max_records=cfg.image_shard_records) as w, \
                    _progress(len(images), "crops") as bar:
                for unit in crop_videos.crop_units(images, iter_images):
                    bar.update(len(unit))
                    good = []
                    for item, data, reason in unit:
                        if data is None:
                            failures.add(item, "unreadable", reason)
                            continue
                        try:
                            rec = _image_record(item, data)
                            if landmarker is not None and (cfg.crop_landmarks == "all"
                                                           or rec.label == REAL):
                                rec = landmarker.add_to(rec)
                        except ValueError as err:
                            failures.add(item, "unreadable",
                                         f"{item['member'] or item['path']}: {err}")
                            continue
                        good.append((item, rec))
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
        finished = shard_writer.finished_ids(out)
        left = ~(items["video_id"].isin(finished) | crop_videos.record_ids(items).isin(finished)
                 | items["video_id"].isin(set(fails["video_id"])))
        pending = int(left.sum())
        if pending:
            log.warning("%d of %d items are not done yet: run the same command again to finish",
                        pending, len(items))
        shard_writer.build_index(
            out, items=len(items), pending=pending, failures=len(fails),
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


class _InOrder:
    """Puts finished videos into shards in manifest order, whatever order they finish in.

    A finished video's records are journaled first (so a kill never loses them); once every
    earlier video is resolved (in a shard or failed) they go into the open shard, and their
    journal entries are dropped when that shard is complete on disk.
    """

    def __init__(self, ids: list[str], writer: shard_writer.ShardWriter,
                 store: journal.ResultJournal, written: Counter):
        self.ids, self.next = ids, 0
        self.writer, self.store, self.written = writer, store, written
        self.resolved: dict[str, bool] = {}  # finished, waiting for an earlier video
        self.seen: set[str] = set()
        self.open: list[str] = []
        writer.on_commit = self._committed

    def _committed(self, info, ids) -> None:
        self.store.discard(self.open)
        self.open = []

    def resolve(self, video_id: str, ok: bool) -> None:
        """Note that ``video_id`` finished (``ok``: its records are journaled) or failed."""
        self.seen.add(video_id)
        self.resolved[video_id] = ok
        while self.next < len(self.ids) and self.ids[self.next] in self.resolved:
            vid = self.ids[self.next]
            if self.resolved.pop(vid):
                for data, n_faces, track in self.store.get(vid):
                    self.writer.add_serialized(data, vid, n_faces, track, autoflush=False)
                    self.written["faces"] += n_faces
                self.written["items"] += 1
                self.open.append(vid)
                self.writer.maybe_flush()  # an item never straddles two shards
            self.next += 1


def _run_videos(cfg: PrepConfig, videos: pd.DataFrame, out: Path, failures: journal.FailureLog,
                written: Counter) -> None:
    rows = videos.to_dict("records")
    ids = [r["video_id"] for r in rows]
    store = journal.ResultJournal(out)
    held = store.ids()
    store.discard(held - set(ids))  # in a complete shard, or no longer in the manifest
    held &= set(ids)
    if held:
        log.info("resuming: %d finished videos taken from the journal", len(held))
    compute = [r for r in rows if r["video_id"] not in held]
    workers = cfg.workers or os.cpu_count() or 1
    job = VideoJob(cfg.detector, cfg.detect_side, cfg.extract_config())
    with shard_writer.ShardWriter(out, "videos", max_records=cfg.shard_records) as w, \
            _progress(len(rows), "videos") as bar:
        order = _InOrder(ids, w, store, written)
        for vid in ids:
            if vid in held:
                order.resolve(vid, True)
                bar.update()
        for res in engines.run_jobs(job, compute, engine=cfg.engine, workers=workers,
                                    scheduler=cfg.scheduler):
            bar.update()
            item = res["item"]
            if item["video_id"] in order.seen:
                log.warning("%s finished twice; the first result is kept", item["video_id"])
                continue
            if "records" in res:
                store.put(item["video_id"], res["records"])
            else:
                failures.add(item, res["status"], res["reason"])
            order.resolve(item["video_id"], "records" in res)
    store.close()
