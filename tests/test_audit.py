"""`dfd audit`: image properties that alone separate FAKE from REAL in a crop set."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from data_prep import audit, manifests
from dfd_app.cli.main import main
from tests.conftest import shared_path, write_crop_set


def _face(seed: int, size: int = 96) -> np.ndarray:
    """A textured BGR image: a smooth gradient plus fine noise (something to blur)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 1 - xx], -1) * 150 + 50
    return np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def test_jpeg_luma_quant_reads_the_table_and_refuses_other_bytes():
    img = _face(0)
    strong, light = audit.jpeg_luma_quant(_jpeg(img, 30)), audit.jpeg_luma_quant(_jpeg(img, 95))
    assert strong is not None and light is not None and strong > 3 * light
    ok, png = cv2.imencode(".png", img)
    assert audit.jpeg_luma_quant(png.tobytes()) is None
    assert audit.jpeg_luma_quant(b"") is None and audit.jpeg_luma_quant(b"\xff\xd8\x00junk") is None
    assert audit.jpeg_luma_quant(_jpeg(img)[:40]) is None  # cut before its table ends


def test_measure_image_sees_blur_and_a_blurred_inner_face():
    img = _face(1)
    plain = audit.measure_image(img)
    assert set(plain) == set(audit.STATS)
    blurred = audit.measure_image(cv2.GaussianBlur(img, (9, 9), 2.0))
    assert blurred["sharpness"] < 0.5 * plain["sharpness"]
    inner = img.copy()  # blur only the middle: what a swapped, smoother face looks like
    s = slice(20, 76)
    inner[s, s] = cv2.GaussianBlur(img, (9, 9), 2.0)[s, s]
    assert audit.measure_image(inner)["inner_outer"] < plain["inner_outer"] - 0.3
    assert abs(blurred["brightness"] - plain["brightness"]) < 2
    assert np.isnan(plain["jpeg_quant"]) and audit.measure_image(img, _jpeg(img))["jpeg_quant"] > 0
    with pytest.raises(ValueError, match="colour image"):
        audit.measure_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="colour image"):
        audit.measure_image(np.zeros((32, 32), np.uint8))


@pytest.fixture
def blurry_fakes(tmp_path):
    """A crop set whose FAKE crops are blurred copies of other faces; one crop is broken."""
    crops = []
    for i in range(24):
        fake = i % 2 == 1
        img = _face(i)
        data = _jpeg(cv2.GaussianBlur(img, (9, 9), 1.5) if fake else img)
        crops.append((f"img{i}.jpg", data if i != 5 else b"not an image",
                      "FAKE" if fake else "REAL", f"orig{i // 2}.mp4"))
    return write_crop_set(tmp_path / "crops", crops)


def test_audit_flags_the_blur_shortcut_and_records_the_broken_image(blurry_fakes):
    items = manifests.load_manifest(blurry_fakes).items
    result = audit.audit_items(items)
    assert len(result.items) == 24 and result.unreadable == 1 and result.videos_skipped == 0
    broken = result.items[result.items["error"] != ""]
    assert list(broken["video_id"].str.contains("img5")) == [True]
    assert broken[list(audit.STATS)].isna().all(axis=None)
    s = result.summary.set_index("figure")
    assert s.loc["sharpness", "roc_auc_fake"] == 0.0 and s.loc["sharpness", "separates"]
    assert s.loc["sharpness", "median_fake"] < s.loc["sharpness", "median_real"]
    assert s.loc["sharpness", "n_real"] == 12 and s.loc["sharpness", "n_fake"] == 11
    assert not s.loc["width", "separates"] and np.isnan(s.loc["width", "roc_auc_fake"])
    assert not s.loc["brightness", "separates"]


def test_audit_sample_split_and_bad_requests(blurry_fakes):
    items = manifests.load_manifest(blurry_fakes).items
    few = audit.audit_items(items, sample=3, seed=1)
    assert len(few.items) == 6 and sorted(few.items["label"]) == [0, 0, 0, 1, 1, 1]
    again = audit.audit_items(items, sample=3, seed=1)
    assert list(again.items["video_id"]) == list(few.items["video_id"])
    with pytest.raises(ValueError, match="split column"):
        audit.audit_items(items.drop(columns="split"), split="train")
    with pytest.raises(ValueError, match="no rows in split 'test'"):
        audit.audit_items(items.assign(split="train"), split="test")
    assert len(audit.audit_items(items.assign(split="train"), split="train").items) == 24
    with pytest.raises(ValueError, match="no image rows"):
        audit.audit_items(items.assign(kind="video"))
    with pytest.raises(ValueError, match="sample"):
        audit.audit_items(items, sample=0)


def test_dfd_audit_command(blurry_fakes, tmp_path, capsys):
    out, per_item = tmp_path / "summary.csv", tmp_path / "items.csv"
    assert main(["audit", str(blurry_fakes), "--out", str(out), "--items", str(per_item)]) == 0
    text = capsys.readouterr().out
    assert "SEPARATES" in text and "24 images audited (1 unreadable" in text
    assert "sharpness 0.000" in text
    summary = pd.read_csv(out)
    assert set(summary["figure"]) == set(audit.STATS) and len(pd.read_csv(per_item)) == 24
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert main(["audit", str(blurry_fakes), "--flag", "0.7"]) == 2


def test_dfd_audit_finds_the_dfdc_sharpness_shortcut():
    """On the shared crops: DFDC's fakes are blurrier than its reals (docs/training.md)."""
    dfdc = shared_path("data", "dfdc_faces")
    items = manifests.load_manifest(dfdc).items
    result = audit.audit_items(items, sample=400, seed=0, flag=0.05)  # all 12,000: 0.379
    s = result.summary.set_index("figure")
    assert s.loc["sharpness", "roc_auc_fake"] < 0.45 and s.loc["sharpness", "separates"]
    assert s.loc["sharpness", "median_fake"] < s.loc["sharpness", "median_real"]


def _audited(n_videos: int = 40, seed: int = 0) -> pd.DataFrame:
    """Audit rows of ``n_videos`` videos of two images each, both labels, varied figures."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        for f in range(2):
            rows.append({"video_id": f"v{v}_{f}.jpg", "video": f"vid{v}", "source": "csv:x",
                         "label": v % 2, "error": "",
                         **{stat: float(rng.uniform(1, 100)) for stat in audit.STATS}})
    return pd.DataFrame(rows)


def test_model_ranks_finds_a_model_that_reads_a_figure_within_each_class():
    items = _audited()
    # a model whose P(fake) falls with sharpness, image by image
    scores = pd.DataFrame({"video_id": items["video_id"], "p_fake": 1.0 / items["sharpness"],
                           "status": "ok"})
    ranks, unmatched = audit.model_ranks(items, scores)
    r = ranks.set_index("figure")
    assert unmatched == 0 and r.loc["sharpness", "n_real"] == 40
    assert r.loc["sharpness", "rho_real"] == pytest.approx(-1.0)
    assert r.loc["sharpness", "rho_fake"] == pytest.approx(-1.0) and r.loc["sharpness", "ranks"]
    assert not r.drop(index="sharpness")["ranks"].any()
    # scored by video: each video's figures are the mean of its images'
    per_video = items.groupby("video")["brightness"].mean()
    by_video = pd.DataFrame({"video_id": per_video.index, "p_fake": per_video.to_numpy() / 100})
    extra = pd.DataFrame({"video_id": ["elsewhere", "failed"], "p_fake": ["0.5", ""]})
    ranks, unmatched = audit.model_ranks(items, pd.concat([by_video, extra]))
    r = ranks.set_index("figure")
    assert unmatched == 1  # the failed row has no score and is not counted
    assert r.loc["brightness", "n_real"] == 20 and r.loc["brightness", "ranks"]
    assert r.loc["brightness", "rho_real"] == pytest.approx(1.0)
    # only one sign counts: a figure read one way in each class
    flip = np.where(items["label"] == 1, items["sharpness"], 1.0 / items["sharpness"])
    ranks, _ = audit.model_ranks(items, scores.assign(p_fake=flip))
    assert not ranks.set_index("figure").loc["sharpness", "ranks"]


def test_model_ranks_refuses_scores_it_cannot_use():
    items = _audited()
    with pytest.raises(ValueError, match="p_fake"):
        audit.model_ranks(items, pd.DataFrame({"video_id": ["v0_0.jpg"]}))
    with pytest.raises(ValueError, match="none of the 1 scores"):
        audit.model_ranks(items, pd.DataFrame({"video_id": ["nope"], "p_fake": [0.3]}))


def test_dfd_audit_with_a_models_scores(blurry_fakes, tmp_path, capsys):
    items = manifests.load_manifest(blurry_fakes).items
    measured = audit.audit_items(items).items.dropna(subset=["sharpness"])
    scores = tmp_path / "scores.csv"
    pd.DataFrame({"video_id": measured["video_id"], "label": measured["label"],
                  "p_fake": 1.0 / measured["sharpness"], "status": "ok"}).to_csv(scores,
                                                                                 index=False)
    out = tmp_path / "summary.csv"
    assert main(["audit", str(blurry_fakes), "--scores", str(scores), "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "RANKS" in text and "ranks by 1 figure(s)" in text and "sharpness (rho REAL -1.00" in text
    summary = pd.read_csv(out).set_index("figure")
    assert summary.loc["sharpness", "ranks"] and summary.loc["sharpness", "rho_fake"] == -1.0
    # dfd detect's table (video, p_fake, verdict) serves too: the truth is the manifest's
    detect = tmp_path / "detect.csv"
    pd.DataFrame({"video": measured["video_id"], "p_fake": 1.0 / measured["sharpness"],
                  "verdict": "FAKE", "status": "ok"}).to_csv(detect, index=False)
    assert main(["audit", str(blurry_fakes), "--scores", str(detect), "--out", str(out),
                 "--no-progress"]) == 0
    assert pd.read_csv(out).set_index("figure").loc["sharpness", "rho_real"] == -1.0
    assert main(["audit", str(blurry_fakes), "--scores", str(tmp_path / "none.csv")]) == 2
    (tmp_path / "bad.csv").write_text("video_id,score\na,1\n")
    assert main(["audit", str(blurry_fakes), "--scores", str(tmp_path / "bad.csv")]) == 2
