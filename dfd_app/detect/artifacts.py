"""Files and images beside a verdict: face-crop JPEGs, score-timeline PNGs, base64 thumbnails."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from dfd.evaluation.figures import plot_timeline

log = logging.getLogger(__name__)

_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot state is not thread-safe (service threads)


def output_stem(path) -> str:
    """A file-name-safe, collision-free stem for one input video: ``<stem>_<hash6>``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(path)).stem)[:80] or "video"
    return f"{stem}_{hashlib.sha1(str(path).encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def encode_jpeg(face: np.ndarray, size: int | None = None, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB uint8 face, optionally resized to ``size`` x ``size``."""
    import cv2

    img = np.ascontiguousarray(face[..., ::-1])  # RGB -> BGR for OpenCV
    if size and img.shape[0] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a face of shape {face.shape}")
    return buf.tobytes()


def write_faces(out_dir, video_path, faces, track_ids, frame_idx) -> Path:
    """Write ``<out>/<video stem>/t<track>_f<frame>.jpg`` for every face used; returns the folder."""
    folder = Path(out_dir) / output_stem(video_path)
    folder.mkdir(parents=True, exist_ok=True)
    for face, t, f in zip(faces, track_ids, frame_idx):
        (folder / f"t{int(t)}_f{int(f):06d}.jpg").write_bytes(encode_jpeg(face))
    return folder


def write_overlays(out_dir, video_path, overlays, track_ids, frame_idx) -> Path:
    """Write ``<out>/<video stem>/t<track>_f<frame>.png``: each face with its heat map."""
    import cv2

    folder = Path(out_dir) / output_stem(video_path)
    folder.mkdir(parents=True, exist_ok=True)
    for img, t, f in zip(overlays, track_ids, frame_idx):
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
        if not ok:
            raise ValueError(f"PNG encoding failed for an overlay of shape {img.shape}")
        (folder / f"t{int(t)}_f{int(f):06d}.png").write_bytes(buf.tobytes())
    return folder


def write_plot(path, rec: dict, frame_idx, p, track_ids) -> Path:
    """The per-frame P(fake) timeline of one video as a PNG (threshold and video score marked)."""
    plot = plot_timeline
    title = f"{Path(rec['video']).name}: {rec['label']} (P(fake) {rec['p_fake']:.3f})"
    with _PLOT_LOCK:
        return plot(frame_idx, p, path, threshold=rec["threshold"], video_id=title,
                    video_score=rec["p_fake"], track=track_ids)


def plot_png_base64(rec: dict, frame_idx, p, track_ids) -> str:
    """The timeline PNG as base64 text (for JSON)."""
    with tempfile.TemporaryDirectory(prefix="dfd-plot-") as d:
        out = write_plot(Path(d) / "timeline.png", rec, frame_idx, p, track_ids)
        return base64.b64encode(out.read_bytes()).decode("ascii")


def thumbnails(faces, track_ids, frame_idx, p, n: int, size: int = 96,
               overlays=None) -> list[dict]:
    """Up to ``n`` small base64 JPEG faces spread evenly over the video, with their scores
    (and, given ``overlays``, each face's heat-map overlay as ``overlay_jpeg_base64``)."""
    if len(faces) == 0 or n <= 0:
        return []
    order = np.lexsort((np.asarray(track_ids), np.asarray(frame_idx)))
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]
    out = []
    for i in pick:
        jpg = encode_jpeg(faces[i], size=size, quality=80)
        item = {"track": int(track_ids[i]), "frame_index": int(frame_idx[i]),
                "p_fake": float(p[i]), "jpeg_base64": base64.b64encode(jpg).decode("ascii")}
        if overlays is not None:
            over = encode_jpeg(overlays[i], size=size, quality=85)
            item["overlay_jpeg_base64"] = base64.b64encode(over).decode("ascii")
        out.append(item)
    return out

