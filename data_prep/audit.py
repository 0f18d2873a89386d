"""``dfd audit``: label shortcuts of a face-crop set, measured without a model.

A detector learns whatever separates FAKE from REAL in its training set, and a property that
does so by accident of how one source was made (its fakes re-saved at another JPEG quality,
cropped at another size, blurrier, brighter) is learned as readily as a face swap's traces,
and does not carry over to another source. This module measures a few such properties on
every image of a manifest and says, per source, how well each one alone separates the labels
(ROC-AUC with FAKE = 1 as the positive class: 0.5 = no information; far from 0.5 in either
direction = the property separates the labels, and a model can learn it). A property that
separates on one source and not on another is a shortcut of that source; one that separates
on every source may be the manipulation's own trace (``inner_outer``: a swapped inner face
blurrier than its surroundings).

Found with it (docs/training.md): in ``dfdc_faces`` the fakes are blurrier than the reals
(``sharpness`` alone: ROC-AUC 0.38, i.e. 0.62 for blurriness), in ``ffpp_faces`` much less
(0.46), and at the models' 256 px FF++'s REAL faces are as blurry as DFDC's fakes.

Given a model's scores (``dfd predict --out``), :func:`model_ranks` says whether the model
uses a figure: the rank correlation of P(fake) with it *within* each class. A figure that
separates the labels may also be a real trace; a model whose P(fake) falls with sharpness
among REAL faces alone, and among FAKE faces alone, is reading sharpness, not the swap (found
so: every model trained on ``dfdc_faces`` here, Spearman rho -0.3 to -0.6 in each class).

Only image rows (``kind == "image"``: crop sets) are measured; video rows are left out and
counted. An image that cannot be read gets a row with its ``error`` and no figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from data_prep.prep import iter_images
from dfd import progress
from dfd.image_stats import SIDE, laplacian, middle_variance

log = logging.getLogger(__name__)

#: The side every image is resized to before the texture figures, so that crop sets of
#: different sizes are compared on one scale (dfd.image_stats: sharpness is measured there).
AUDIT_SIDE = SIDE

#: name -> what it measures; the order of the summary's rows.
STATS = {
    "width": "image width in pixels, as stored",
    "jpeg_quant": "mean of the JPEG luma quantisation table (higher: stronger compression; "
                  "empty for other formats)",
    "sharpness": "variance of the Laplacian over the middle half of the grey face at 256 px",
    "inner_outer": "log of mean |Laplacian| in the inner face over the side strips (the inner "
                   "face blurrier than its surroundings: < 0)",
    "brightness": "mean grey level (0-255)",
    "saturation": "mean HSV saturation (0-255)",
}

#: |ROC-AUC - 0.5| from which a figure is flagged as separating the labels.
DEFAULT_FLAG = 0.1
#: |Spearman rho| of P(fake) with a figure, in both classes, from which a model is flagged as
#: ranking by it.
DEFAULT_RHO_FLAG = 0.2


def jpeg_luma_quant(data: bytes) -> float | None:
    """The mean of the first (luma) quantisation table of a JPEG file, or None when ``data``
    is not a JPEG or has no table. Read from the DQT segment; nothing is decoded."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDB:  # DQT: [Pq|Tq] then 64 values of 8 (Pq 0) or 16 bits (Pq 1)
            seg = data[i + 4:i + 2 + length]
            if not seg:
                return None
            precision = seg[0] >> 4
            size = 128 if precision else 64
            table = seg[1:1 + size]
            if len(table) < size:
                return None
            values = (np.frombuffer(table, ">u2") if precision else np.frombuffer(table, np.uint8))
            return float(values.mean())
        if marker == 0xDA:  # start of scan: no table before it
            return None
        i += 2 + length
    return None


def measure_image(bgr: np.ndarray, data: bytes | None = None) -> dict:
    """The figures of :data:`STATS` for one decoded BGR image (``data``: its file's bytes, for
    the JPEG table)."""
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or min(bgr.shape[:2]) < 8:
        raise ValueError(f"expected a colour image of at least 8 x 8 pixels, got shape "
                         f"{getattr(bgr, 'shape', None)}")
    h, w = bgr.shape[:2]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lap = laplacian(grey, AUDIT_SIDE)
    n = AUDIT_SIDE
    inner = np.abs(lap[int(n * 0.3):int(n * 0.75), int(n * 0.3):int(n * 0.7)]).mean()
    sides = np.concatenate([np.abs(lap[int(n * 0.3):int(n * 0.8), :int(n * 0.12)]).ravel(),
                            np.abs(lap[int(n * 0.3):int(n * 0.8), -int(n * 0.12):]).ravel()]).mean()
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    quant = jpeg_luma_quant(data) if data is not None else None
    return {
        "width": float(w),
        "jpeg_quant": np.nan if quant is None else quant,
        "sharpness": middle_variance(lap),
        "inner_outer": float(np.log((inner + 1e-3) / (sides + 1e-3))),
        "brightness": float(grey.mean()),
        "saturation": float(hsv[..., 1].mean()),
    }


def _auc(values: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of ``values`` as a FAKE score (ties count half); NaN without both classes or
    with a constant figure."""
    ok = np.isfinite(values)
    v, y = values[ok], labels[ok]
    if len(np.unique(y)) < 2 or len(np.unique(v)) < 2:
        return float("nan")
    return float(roc_auc_score(y, v))


def _median(values: np.ndarray) -> float:
    """The median of the finite values, NaN when there are none."""
    v = values[np.isfinite(values)]
    return float(np.median(v)) if len(v) else float("nan")


@dataclass
class Audit:
    """Per-image figures (``items``), the per-source summary and how many rows were skipped."""

    items: pd.DataFrame
    summary: pd.DataFrame
    videos_skipped: int
    unreadable: int


def audit_items(items: pd.DataFrame, split: str | None = None, sample: int | None = None,
                seed: int = 0, flag: float = DEFAULT_FLAG) -> Audit:
    """Measure every image row of the manifest ``items`` (optionally one ``split``, and at
    most ``sample`` images per source and label, drawn with ``seed``)."""
    if split is not None:
        if "split" not in items.columns:
            raise ValueError("the manifest has no split column: give it without --split, or "
                             "write one with `dfd split`")
        items = items[items["split"].fillna("") == split]
        if items.empty:
            raise ValueError(f"no rows in split {split!r}")
    kinds = items["kind"].fillna("") if "kind" in items.columns else pd.Series("image", items.index)
    videos_skipped = int((kinds != "image").sum())
    images = items[kinds == "image"]
    if images.empty:
        raise ValueError(f"no image rows to audit ({videos_skipped} video rows: `dfd audit` "
                         "measures face-crop sets; run `dfd prep` on videos first)")
    images = images[images["label"].astype(str).isin(("0", "1"))]
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be at least 1, got {sample!r}")
        shuffled = images.sample(frac=1.0, random_state=seed)
        images = shuffled.groupby(["source", "label"], sort=False).head(sample).sort_index()
    rows = []
    with progress.bar(total=len(images), desc="audit", unit="image") as bar:
        for item, data, reason in iter_images(images):
            rows.append(_measure(item, data, reason))
            bar.update(1)
    table = pd.DataFrame(rows, columns=["video_id", "video", "source", "label", "error", *STATS])
    unreadable = int((table["error"].fillna("") != "").sum())
    return Audit(table, summarise(table, flag), videos_skipped, unreadable)


def _measure(item: dict, data: bytes | None, reason: str) -> dict:
    """One image's row: its figures, or its ``error`` (never raises for a bad image)."""
    video = str(item.get("video") or "")
    row = {"video_id": item["video_id"], "video": video if video and video != "nan" else
           item["video_id"], "source": item["source"], "label": int(item["label"]),
           "error": reason}
    if data is not None:
        try:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{len(data)} bytes are not a decodable image")
            row.update(measure_image(bgr, data))
        except ValueError as err:
            row["error"] = str(err)
    return row


def summarise(table: pd.DataFrame, flag: float = DEFAULT_FLAG) -> pd.DataFrame:
    """Per source and figure: medians of REAL and FAKE, the figure's ROC-AUC as a FAKE score
    and whether it separates them (``|auc - 0.5| >= flag``)."""
    out = []
    ok = table[table["error"].fillna("") == ""]
    for source, part in ok.groupby("source", sort=True):
        y = part["label"].to_numpy(int)
        for stat in STATS:
            v = part[stat].to_numpy(float)
            auc = _auc(v, y)
            out.append({"source": source, "figure": stat, "n_real": int((y == 0).sum()),
                        "n_fake": int((y == 1).sum()),
                        "median_real": _median(v[y == 0]), "median_fake": _median(v[y == 1]),
                        "roc_auc_fake": auc,
                        "separates": bool(np.isfinite(auc) and abs(auc - 0.5) >= flag)})
    return pd.DataFrame(out, columns=["source", "figure", "n_real", "n_fake", "median_real",
                                      "median_fake", "roc_auc_fake", "separates"])


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of the finite pairs; NaN with fewer than 3 or a constant side."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or len(np.unique(a[ok])) < 2 or len(np.unique(b[ok])) < 2:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def model_ranks(items: pd.DataFrame, scores: pd.DataFrame,
                flag: float = DEFAULT_RHO_FLAG) -> tuple[pd.DataFrame, int]:
    """Per source and figure: Spearman's rho of a model's P(fake) with the figure among the
    REAL items alone and among the FAKE items alone, and whether the model ranks by it
    (``ranks``: both |rho| >= ``flag``, with one sign).

    ``items``: :attr:`Audit.items`; ``scores``: rows of ``dfd predict --out`` (``video_id``,
    ``p_fake``, optional ``status`` and ``source``). A score's ``video_id`` names one image
    (a crop set scored image by image) or one video (the manifest's ``video``: its images'
    figures are averaged). Returns the table and the number of usable scores that matched no
    audited image."""
    need = {"video_id", "p_fake"} - set(scores.columns)
    if need:
        raise ValueError(f"the scores have no {', '.join(sorted(need))} column (expected the "
                         f"CSV of `dfd predict --out`; columns: {', '.join(scores.columns)})")
    sc = scores
    if "status" in sc.columns:
        sc = sc[sc["status"].fillna("ok").astype(str) == "ok"]
    sc = sc.assign(video_id=sc["video_id"].astype(str),
                   p_fake=pd.to_numeric(sc["p_fake"], errors="coerce"))
    sc = sc[np.isfinite(sc["p_fake"])]
    ok = items[items["error"].fillna("") == ""]
    by_image = ok["video_id"].astype(str).isin(set(sc["video_id"]))
    ok = ok.assign(unit=ok["video_id"].astype(str).where(by_image, ok["video"].astype(str)))
    units = ok.groupby(["source", "unit"], sort=False).agg(
        {"label": "first", **{stat: "mean" for stat in STATS}}).reset_index()
    keys = ["unit"]
    if "source" in sc.columns and sc["source"].astype(str).isin(set(units["source"])).all():
        keys = ["source", "unit"]
    joined = units.merge(sc.rename(columns={"video_id": "unit"})[[*keys, "p_fake"]],
                         on=keys, how="inner")
    if joined.empty:
        raise ValueError(f"none of the {len(sc)} scores names an audited image or video "
                         f"(first score id: {sc['video_id'].iloc[0] if len(sc) else 'none'!r}; "
                         f"first image: {ok['video_id'].iloc[0] if len(ok) else 'none'!r})")
    unmatched = len(sc) - len(joined)
    out = []
    for source, part in joined.groupby("source", sort=True):
        y, p = part["label"].to_numpy(int), part["p_fake"].to_numpy(float)
        for stat in STATS:
            v = part[stat].to_numpy(float)
            rho_r, rho_f = _rho(p[y == 0], v[y == 0]), _rho(p[y == 1], v[y == 1])
            ranks = bool(np.isfinite(rho_r) and np.isfinite(rho_f) and min(abs(rho_r), abs(rho_f))
                         >= flag and np.sign(rho_r) == np.sign(rho_f))
            out.append({"source": source, "figure": stat, "n_real": int((y == 0).sum()),
                        "n_fake": int((y == 1).sum()), "rho_real": rho_r, "rho_fake": rho_f,
                        "ranks": ranks})
    return pd.DataFrame(out, columns=["source", "figure", "n_real", "n_fake", "rho_real",
                                      "rho_fake", "ranks"]), unmatched
