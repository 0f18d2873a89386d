"""How far does the blur of a face go across sources? A two-number baseline for every model.

Issue 10 judges models by the ROC-AUC they reach on a source they never saw. Every Meso-4
trained on DFDC here ranks faces by sharpness (``dfd audit``), so the question is whether the
models learned anything beyond it. This bench answers it without a network: per face crop,
the log mean absolute Laplacian (4-neighbour, grey) in fixed regions of the crop (the inner
face, the side strips, the forehead, the chin, a cheek) at two scales (128 and 64 px); a
logistic regression (standardised features) fitted on one source's ``train`` split of a
``dfd split`` manifest and scored, video by video (mean of a video's frames), on that source's
``test`` split and on every video of the other source:

* ``inner sharpness``: the inner face's two numbers alone (absolute blur);
* ``inner / outer ratios``: the inner face against each other region (relative blur: the
  blended inner face of a swap against its untouched surroundings);
* ``every region``: the twelve absolute numbers.

Prints one table; reads the crops named by the manifest (research data, never copied)::

    .venv/bin/python bench/blur_baseline.py /work/runs/split.csv [--train-source dfdc]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIDES = (128, 64)
#: (rows, columns) of each region as fractions of the crop side
REGIONS = {
    "inner": ((0.3, 0.75), (0.3, 0.7)),
    "left": ((0.3, 0.8), (0.0, 0.12)),
    "right": ((0.3, 0.8), (0.88, 1.0)),
    "top": ((0.0, 0.15), (0.25, 0.75)),
    "bottom": ((0.85, 1.0), (0.3, 0.7)),
    "cheek": ((0.45, 0.8), (0.15, 0.3)),
}


def region_sharpness(rgb: np.ndarray) -> dict[str, float]:
    """``{region+side: log mean |Laplacian|}`` of one RGB crop."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    out = {}
    for n in SIDES:
        lap = np.abs(cv2.Laplacian(cv2.resize(grey, (n, n), interpolation=cv2.INTER_AREA),
                                   cv2.CV_32F, ksize=1))
        for name, ((y0, y1), (x0, x1)) in REGIONS.items():
            part = lap[int(n * y0):int(n * y1), int(n * x0):int(n * x1)]
            out[f"{name}{n}"] = float(np.log(part.mean() + 1e-2))
    return out


def iter_crops(rows: pd.DataFrame):
    """``((path, member), RGB array)`` of every crop of manifest ``rows``, each archive read
    once (``dfd prep``'s reader); an unreadable crop stops the bench with its reason."""
    from PIL import Image

    from data_prep.prep import iter_images

    for item, data, reason in iter_images(rows):
        if data is None:
            raise SystemExit(reason)
        img = Image.open(io.BytesIO(data)).convert("RGB")
        yield (item["path"], item["member"]), np.asarray(img)


def read_crops(rows: pd.DataFrame) -> np.ndarray:
    """The crops of manifest ``rows`` (one size), stacked in row order."""
    got = dict(iter_crops(rows))
    return np.stack([got[(p, m)] for p, m in zip(rows["path"], rows["member"])])


def manifest_features(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row of :func:`region_sharpness` per manifest row."""
    feats = {key: region_sharpness(img) for key, img in iter_crops(manifest)}
    return pd.DataFrame([feats[(p, m)] for p, m in zip(manifest["path"], manifest["member"])],
                        index=manifest.index)


def with_videos(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with ``_video``: the video a crop belongs to (FF++: ``video``; a crop set
    of one crop per video: the crop's own ``video_id``)."""
    m = manifest.copy()
    m["_video"] = m["video"].fillna(m["video_id"]) if "video" in m else m["video_id"]
    return m


def video_auc(p: np.ndarray, rows: pd.DataFrame) -> float:
    """ROC-AUC of the mean P(fake) of each video of ``rows`` (with ``_video``)."""
    from sklearn.metrics import roc_auc_score

    g = pd.DataFrame({"p": p, "y": rows["label"].to_numpy(), "v": rows["_video"].to_numpy()})
    g = g.groupby("v").mean()
    return float(roc_auc_score(g["y"], g["p"]))


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifest", help="a dfd split manifest over two crop sets")
    ap.add_argument("--train-source", default="dfdc",
                    help="a unique part of the source the baseline is fitted on")
    args = ap.parse_args()
    t0 = time.perf_counter()
    m = with_videos(pd.read_csv(args.manifest))
    m = m[m["kind"] == "image"]
    feats = manifest_features(m)
    for n in SIDES:
        for r in REGIONS:
            if r != "inner":
                feats[f"ratio_{r}{n}"] = feats[f"inner{n}"] - feats[f"{r}{n}"]
    home = m["source"].str.contains(args.train_source, regex=False)
    if home.sum() == 0 or home.all():
        raise SystemExit(f"--train-source {args.train_source!r} must name one of the sources "
                         f"{sorted(m['source'].unique())}")
    train = home & (m["split"] == "train")
    sets = {
        "inner sharpness (absolute)": [f"inner{n}" for n in SIDES],
        "inner / outer ratios (relative)": [f"ratio_{r}{n}" for n in SIDES for r in REGIONS
                                            if r != "inner"],
        "every region (absolute)": [f"{r}{n}" for n in SIDES for r in REGIONS],
    }
    other = sorted(m.loc[~home, "source"].unique())
    print(f"fitted on {m.loc[train, 'source'].iloc[0]} train ({int(train.sum())} crops); "
          f"{time.perf_counter() - t0:.0f} s to read")
    print(f"{'features':<34} {'own test':>9} " + " ".join(f"{s + ' (all)':>22}" for s in other))
    for name, cols in sets.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(feats.loc[train, cols], m.loc[train, "label"])
        test = home & (m["split"] == "test")
        row = [video_auc(model.predict_proba(feats.loc[test, cols])[:, 1], m[test])]
        for s in other:
            rows = m["source"] == s
            row.append(video_auc(model.predict_proba(feats.loc[rows, cols])[:, 1], m[rows]))
        print(f"{name:<34} {row[0]:>9.3f} " + " ".join(f"{v:>22.3f}" for v in row[1:]))


if __name__ == "__main__":
    main()
