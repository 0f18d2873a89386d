"""FAKE / REAL / UNCERTAIN: the band, how it is chosen, and where it is used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dfd.evaluation.calibration import (
    band_groups,
    choose_uncertain_band,
    lower_bound,
    verdict_precision,
)
from dfd.labels import UNCERTAIN, verdict


def test_verdict_with_and_without_a_band():
    assert verdict(0.5, 0.5) == "FAKE" and verdict(0.49, 0.5) == "REAL"
    band = {"low": 0.3, "high": 0.7}
    assert [verdict(p, 0.5, band) for p in (0.1, 0.3, 0.5, 0.69, 0.7, 0.9)] == [
        "REAL", UNCERTAIN, UNCERTAIN, UNCERTAIN, "FAKE", "FAKE"]
    assert verdict(0.99, 0.5, {"low": 0.2, "high": None}) == UNCERTAIN  # FAKE never said
    assert verdict(0.01, 0.5, {"low": None, "high": 0.8}) == UNCERTAIN  # REAL never said
    assert verdict(float("nan"), 0.5, band) == "UNKNOWN"


def test_band_reaches_the_precision_outside_it():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, len(y)), 0, 1)
    b = choose_uncertain_band(y, p, 0.5, min_precision=0.85)
    assert b["low"] <= 0.5 <= b["high"]
    fake, real = p >= b["high"], p < b["low"]
    assert y[fake].mean() >= 0.85 and (1 - y[real]).mean() >= 0.85
    assert b["fake_precision"] == pytest.approx(y[fake].mean())
    assert b["coverage"] == pytest.approx((fake | real).mean())
    # the band is the widest decided region: one step inwards breaks the precision
    inner = np.unique(p[(p >= 0.5) & (p < b["high"])])
    if len(inner):
        assert y[p >= inner[-1]].mean() < 0.85
    # a stricter target never narrows the band
    strict = choose_uncertain_band(y, p, 0.5, min_precision=0.95)
    assert strict["high"] is None or strict["high"] >= b["high"]
    assert strict["low"] is None or strict["low"] <= b["low"]


def test_band_of_a_model_at_chance_decides_nothing():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    b = choose_uncertain_band(y, rng.random(300), 0.5, min_precision=0.8)
    assert b["coverage"] < 0.1
    with pytest.raises(ValueError, match="min_precision"):
        choose_uncertain_band(y, rng.random(300), min_precision=0.3)
    with pytest.raises(ValueError, match="no labelled"):
        choose_uncertain_band([], [])


def test_band_holds_within_every_source_not_only_pooled():
    # a large source the model separates well and a small one it does not: pooled, the large
    # one carries the small one's wrong FAKE verdicts; per source, the band must widen
    rng = np.random.default_rng(3)
    y_big = np.repeat([0, 1], 400)
    p_big = np.clip(0.5 + 0.35 * (y_big - 0.5) + rng.normal(0, 0.15, 800), 0, 1)
    y_small = np.repeat([0, 1], 40)
    p_small = np.clip(0.7 + rng.normal(0, 0.15, 80), 0, 1)  # everything reads FAKE
    y, p = np.concatenate([y_big, y_small]), np.concatenate([p_big, p_small])
    src = np.array(["big"] * 800 + ["small"] * 80)
    pooled = choose_uncertain_band(y, p, 0.5, 0.8)
    per = choose_uncertain_band(y, p, 0.5, 0.8, groups=src)
    above = (p >= pooled["high"]) & (src == "small")
    assert above.any() and y[above].mean() < 0.8  # pooled: FF++-like source fails
    assert per["high"] is None or per["high"] > pooled["high"]
    for name, got in per["group_precision"].items():
        for side in ("real", "fake"):
            assert got[side] is None or got[side][1] >= 0.8, (name, side, got)
    assert per["group_precision"]["small"]["n"] == 80
    assert per["fake_precision"] is None or per["fake_precision"] >= 0.8
    with pytest.raises(ValueError, match="one group per video"):
        choose_uncertain_band(y, p, 0.5, 0.8, groups=src[:10])


def test_band_holds_under_every_condition_of_the_same_videos():
    # one source, its videos as stored (separated) and re-coded (the scores drift up and the
    # classes merge): a band chosen on the stored videos alone fails on the re-coded ones
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 300)
    stored = np.clip(0.4 + 0.3 * (y - 0.5) + rng.normal(0, 0.12, 600), 0, 1)
    recoded = np.clip(0.6 + 0.05 * (y - 0.5) + rng.normal(0, 0.12, 600), 0, 1)
    table = pd.DataFrame({"label": np.tile(y, 2), "p_fake": np.concatenate([stored, recoded]),
                          "source": "csv:a", "condition": ["stored"] * 600 + ["h264:40"] * 600})
    groups = band_groups(table)
    assert sorted(set(groups)) == ["csv:a@h264:40", "csv:a@stored"]
    alone = choose_uncertain_band(y, stored, 0.5, 0.8)
    check = verdict_precision(y, recoded, alone, np.full(600, "recoded"))["recoded"]
    assert check["fake"][1] < 0.8  # what the stored-only band promises does not hold
    both = choose_uncertain_band(table["label"], table["p_fake"], 0.5, 0.8, groups=groups)
    for name, got in both["group_precision"].items():
        for side in ("real", "fake"):
            assert got[side] is None or got[side][1] >= 0.8, (name, side, got)
    assert both["high"] is None or both["high"] > alone["high"]
    # the check counts what the band decides, per group, and says when a side is never given
    got = verdict_precision([0, 0, 1, 1], [0.1, 0.8, 0.9, 0.5], {"low": 0.2, "high": 0.7},
                            ["g", "g", "g", "h"])
    assert got == {"g": {"n": 3, "real": [1, 1.0], "fake": [2, 0.5]},
                   "h": {"n": 1, "real": None, "fake": None}}
    assert verdict_precision([1], [0.9], {"low": None, "high": 0.7}, ["g"])["g"]["real"] is None
    # unlabelled (UNKNOWN = -1, missing) or unscored videos are left out, not counted wrong
    assert verdict_precision([1, -1, np.nan, 1], [0.9, 0.9, 0.9, np.nan],
                             {"low": None, "high": 0.7}, ["g"] * 4) == \
        {"g": {"n": 1, "real": None, "fake": [1, 1.0]}}
    with pytest.raises(ValueError, match="one label, score and group"):
        verdict_precision([0, 1], [0.1], {"low": 0.2, "high": 0.7}, ["g", "g"])
    # one source, one condition: no groups
    assert band_groups(table[table["condition"] == "stored"]) is None
    assert band_groups(pd.DataFrame({"p_fake": [0.1]})) is None


def test_a_side_needs_more_than_a_handful_of_videos_at_the_confidence_bound():
    # REAL: 6 videos at the bottom, 5 of them REAL (0.83 by point estimate, 0.42 at a 95%
    # bound); FAKE: 200 videos at the top, 190 FAKE
    y = np.array([0] * 5 + [1] + [0, 1] * 200 + [1] * 190 + [0] * 10)
    p = np.concatenate([np.linspace(0.01, 0.05, 6), np.full(400, 0.5),
                        np.linspace(0.9, 0.99, 200)])
    point = choose_uncertain_band(y, p, 0.5, 0.8)
    bound = choose_uncertain_band(y, p, 0.5, 0.8, confidence=0.95)
    assert point["low"] is not None and point["real_precision"] == pytest.approx(5 / 6)
    assert bound["low"] is None and bound["confidence"] == 0.95
    assert bound["high"] == pytest.approx(point["high"]) and bound["fake_precision"] >= 0.8
    assert lower_bound(5, 6, 0.95) == pytest.approx(0.418, abs=0.002)
    assert lower_bound(0, 6, 0.95) == 0.0 and lower_bound(0, 0, 0.95) == 0.0
    with pytest.raises(ValueError, match="confidence"):
        choose_uncertain_band(y, p, 0.5, 0.8, confidence=1.0)
    with pytest.raises(ValueError, match="hits=7, n=6"):
        lower_bound(7, 6, 0.95)


def test_the_bound_counts_each_video_once_across_its_conditions():
    # 40 videos at the top, 36 FAKE (0.786 at a 95% bound: fails 0.8), each scored under
    # three conditions; counted as 120 independent scores (108 right) it would pass at 0.843
    y = np.array([1] * 36 + [0] * 4 + [0, 1] * 100)
    p = np.concatenate([np.linspace(0.9, 0.99, 40), np.full(200, 0.5)])
    ids = [f"v{i}" for i in range(len(y))]
    y3, p3, ids3 = np.tile(y, 3), np.tile(p, 3), ids * 3
    rows = choose_uncertain_band(y3, p3, 0.5, 0.8, confidence=0.95)
    videos = choose_uncertain_band(y3, p3, 0.5, 0.8, confidence=0.95, videos=ids3)
    assert rows["high"] is not None and videos["high"] is None
    assert videos["n"] == 720 and videos["n_videos"] == 240
    # without repeats the ids change nothing
    once = choose_uncertain_band(y, p, 0.5, 0.8, confidence=0.95, videos=ids)
    assert once == {**choose_uncertain_band(y, p, 0.5, 0.8, confidence=0.95), "n_videos": 240}
    # min_support counts videos too: one video scored six times is one video
    six = choose_uncertain_band([1] * 6 + [0, 1] * 50, [0.99] * 6 + [0.5] * 100, 0.5, 0.8,
                                videos=["a"] * 6 + [f"b{i}" for i in range(100)])
    assert six["high"] is None
    with pytest.raises(ValueError, match="one id per score: 2 for 3"):
        choose_uncertain_band([0, 1, 1], [0.1, 0.9, 0.9], videos=["a", "b"])


def test_detect_context_takes_the_models_band():
    from types import SimpleNamespace

    from dfd_app.detect.pipeline import choose_band

    preset = SimpleNamespace(uncertain={"low": 0.2, "high": 0.8, "threshold": 0.5})
    scorer = SimpleNamespace(scorer=SimpleNamespace(preset=preset))
    assert choose_band(scorer, "auto", 0.5)["high"] == 0.8
    assert choose_band(scorer, "auto", 0.6) is None  # another threshold: the band does not apply
    assert choose_band(scorer, "off", 0.5) is None
    assert choose_band(scorer, (0.4, 0.6), 0.5) == {"low": 0.4, "high": 0.6, "threshold": 0.5}
    with pytest.raises(ValueError, match="low <= threshold <= high"):
        choose_band(scorer, (0.6, 0.7), 0.5)
    plain = SimpleNamespace(scorer=SimpleNamespace(preset=None))
    assert choose_band(plain, "auto", 0.5) is None


def test_a_band_without_verdicts_says_so(caplog):
    from types import SimpleNamespace

    from dfd_app.detect.pipeline import choose_band

    none = {"low": None, "high": None, "threshold": 0.5, "min_precision": 0.8, "n": 240}
    scorer = SimpleNamespace(scorer=SimpleNamespace(preset=SimpleNamespace(uncertain=none)))
    with caplog.at_level("WARNING", logger="dfd_app.detect.pipeline"):
        band = choose_band(scorer, "auto", 0.5)
    assert "every verdict is UNCERTAIN" in caplog.text and "(240 validation scores)" in caplog.text
    assert {verdict(p, 0.5, band) for p in (0.0, 0.3, 0.5, 0.99)} == {UNCERTAIN}



def test_detect_cli_band_flag():
    from dfd_app.cli.detect import parse_band

    assert parse_band("auto") == "auto" and parse_band("0.3,0.7") == (0.3, 0.7)
    with pytest.raises(ValueError, match="--uncertain"):
        parse_band("wide")


def test_calibrate_records_the_band_in_the_export(tmp_path):
    pytest.importorskip("keras")
    from dfd import presets
    from dfd_app.cli import main as cli
    from mesonet_tf import Meso4

    model = Meso4(input_shape=(32, 32, 3))
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(2)

    def table(n, text):
        y = rng.integers(0, 2, n)
        p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99)
        return pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "p_fake": p,
                             "label": np.where(y == 1, "FAKE", "REAL") if text else y,
                             "status": "ok"})

    table(200, False).to_csv(tmp_path / "val.csv", index=False)
    table(200, True).to_csv(tmp_path / "cross.csv", index=False)
    base = ["-q", "calibrate", "--model", str(tmp_path / "m.keras"), "--scores",
            str(tmp_path / "val.csv"), "--uncertain-scores", str(tmp_path / "cross.csv")]
    assert cli.main(base + ["--out", str(tmp_path / "cal")]) == 0
    preset = presets.read_preset(tmp_path / "cal")
    band = preset.uncertain
    assert band and band["n"] == 200 and band["confidence"] == 0.95
    assert band["high"] is None or band["high"] >= 0.5
    assert band["low"] is None or band["low"] <= 0.5
    assert band["fitted_on"].endswith("cross.csv") and preset.calibration
    # the point estimate alone (--precision-confidence 0) never decides less than the bound does
    assert cli.main(base + ["--out", str(tmp_path / "cal0"), "--precision-confidence", "0"]) == 0
    point = presets.read_preset(tmp_path / "cal0").uncertain
    assert point["confidence"] is None and point["low"] <= 0.5 <= point["high"]
    assert point["coverage"] >= band["coverage"]
    with pytest.raises(SystemExit) as exc:  # refused as it is parsed, before any fitting
        cli.main(base + ["--out", str(tmp_path / "bad"), "--precision-confidence", "1.5"])
    assert exc.value.code == 2 and not (tmp_path / "bad").exists()


def test_a_band_with_one_verdict_says_which_is_never_given(caplog):
    from types import SimpleNamespace

    from dfd_app.detect.pipeline import choose_band

    only_fake = {"low": None, "high": 0.69, "threshold": 0.5, "min_precision": 0.8, "n": 2040}
    scorer = SimpleNamespace(scorer=SimpleNamespace(preset=SimpleNamespace(uncertain=only_fake)))
    with caplog.at_level("WARNING", logger="dfd_app.detect.pipeline"):
        band = choose_band(scorer, "auto", 0.5)
    assert band["high"] == 0.69
    assert "never says REAL" in caplog.text and "(2040 validation scores)" in caplog.text
    assert "never says FAKE" not in caplog.text



def _frames_of(videos, per_video, rng, condition=None):
    """A frame table of ``per_video`` faces for each video of ``videos``, spread around it."""
    rows = []
    for vid, p in zip(videos["video_id"], videos["p_fake"]):
        for i in range(per_video):
            rows.append({"video_id": vid, "track": 0, "frame_index": i, "model": "m",
                         "p_fake": float(np.clip(p + rng.normal(0, 0.25), 0.01, 0.99))})
    out = pd.DataFrame(rows)
    return out if condition is None else out.assign(condition=condition)


def test_a_videos_band_score_is_the_aggregate_of_its_calibrated_frames():
    # the calibrated export calibrates each frame, then averages: for a video of several
    # frames that is not the calibration of the raw mean, and the band must see the former
    from dfd.evaluation.calibration import PlattScaling, frame_calibrated_videos

    rng = np.random.default_rng(5)
    scaling = PlattScaling(a=0.25, b=0.3)
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(6)], "label": [0, 1] * 3,
                           "p_fake": np.nan, "status": "ok", "aggregation": "mean"})
    frames = _frames_of(videos.assign(p_fake=rng.uniform(0.05, 0.95, 6)), 10, rng)
    videos["p_fake"] = frames.groupby("video_id", sort=False)["p_fake"].mean().to_numpy()
    got = frame_calibrated_videos(videos, frames, scaling)
    want = [np.mean(scaling.apply(g["p_fake"].to_numpy()))
            for _, g in frames.groupby("video_id", sort=False)]
    np.testing.assert_allclose(got["p_fake"], want, rtol=1e-12)
    assert list(got.columns) == list(videos.columns) and got["label"].tolist() == [0, 1] * 3
    assert np.abs(got["p_fake"] - scaling.apply(videos["p_fake"])).max() > 1e-3
    # another rule, several people (the most suspicious track), the same videos re-coded
    second = frames.assign(track=1, p_fake=0.99)
    two = frame_calibrated_videos(videos.assign(aggregation="max"),
                                  pd.concat([frames, second[second["video_id"] == "v0"]]), scaling)
    assert two["p_fake"].iloc[0] == pytest.approx(float(scaling.apply(0.99)))
    assert two["p_fake"].iloc[1] == pytest.approx(
        float(scaling.apply(frames[frames["video_id"] == "v1"]["p_fake"]).max()))
    both = frame_calibrated_videos(
        pd.concat([videos.assign(condition="stored"), videos.assign(condition="h264:40")]),
        pd.concat([frames.assign(condition="stored"),
                   frames.assign(condition="h264:40", p_fake=frames["p_fake"] ** 2)]), scaling)
    assert len(both) == 12 and (both["p_fake"].iloc[6:].to_numpy()
                                < both["p_fake"].iloc[:6].to_numpy()).all()
    # a condition in one table only, or a video twice: an error, never a pooled score
    with pytest.raises(ValueError, match=r"only the video table has a 'condition'.*h264:40"):
        frame_calibrated_videos(pd.concat([videos.assign(condition="stored"),
                                           videos.assign(condition="h264:40")]), frames, scaling)
    with pytest.raises(ValueError, match=r"only the frame table has a 'condition'.*stored"):
        frame_calibrated_videos(videos, frames.assign(condition="stored"), scaling)
    with pytest.raises(ValueError, match=r"2 rows sharing video_id.*'v0'"):
        frame_calibrated_videos(pd.concat([videos, videos.iloc[:1]]), frames, scaling)
    unnamed = frame_calibrated_videos(videos.assign(condition=None),
                                      frames.assign(condition=None), scaling)
    np.testing.assert_allclose(unnamed["p_fake"], got["p_fake"])
    # a scored video without frames is an error, never a silent fallback
    with pytest.raises(ValueError, match="1 scored video.*no frame.*v5"):
        frame_calibrated_videos(videos, frames[frames["video_id"] != "v5"], scaling)
    with pytest.raises(ValueError, match="frame table lacks.*frame_index"):
        frame_calibrated_videos(videos, frames.drop(columns="frame_index"), scaling)
    # an unscored video (no face) stays unscored
    failed = videos.assign(p_fake=videos["p_fake"].where(videos["video_id"] != "v5"))
    assert np.isnan(frame_calibrated_videos(failed, frames[frames["video_id"] != "v5"],
                                            scaling)["p_fake"].iloc[5])


def test_calibrate_chooses_the_band_on_frames_calibrated_one_by_one(tmp_path):
    pytest.importorskip("keras")
    from dfd import presets
    from dfd.evaluation.calibration import PlattScaling, frame_calibrated_videos
    from dfd_app.cli import main as cli
    from mesonet_tf import Meso4

    Meso4(input_shape=(32, 32, 3)).save(tmp_path / "m.keras")
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 2, n)
    centre = np.clip(0.5 + 0.35 * (y - 0.5) + rng.normal(0, 0.15, n), 0.02, 0.98)
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "label": y,
                           "p_fake": centre, "status": "ok", "aggregation": "mean"})
    frames = _frames_of(videos, 10, rng)
    videos["p_fake"] = frames.groupby("video_id", sort=False)["p_fake"].mean().to_numpy()
    videos.to_csv(tmp_path / "val.csv", index=False)
    frames.to_csv(tmp_path / "frames.csv", index=False)
    base = ["-q", "calibrate", "--model", str(tmp_path / "m.keras"), "--scores",
            str(tmp_path / "val.csv"), "--uncertain-scores", str(tmp_path / "val.csv"),
            "--precision-confidence", "0"]
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--uncertain-frames",
                            str(tmp_path / "frames.csv")]) == 0
    preset = presets.read_preset(tmp_path / "a")
    band, scaling = preset.uncertain, PlattScaling(**preset.calibration)
    assert "frames calibrated one by one" in band["fitted_on"]
    # the band is the one chosen on the frame-calibrated video scores
    exact = frame_calibrated_videos(videos, frames, scaling)["p_fake"].to_numpy()
    again = choose_uncertain_band(y, exact, 0.5, 0.8, confidence=None)
    assert (band["low"], band["high"]) == (again["low"], again["high"])
    assert band["high"] is not None or band["low"] is not None
    # without the frames: the calibration of each raw video score, another table
    assert cli.main(base + ["--out", str(tmp_path / "b")]) == 0
    plain = presets.read_preset(tmp_path / "b").uncertain
    assert "one by one" not in plain["fitted_on"]
    assert (plain["low"], plain["high"]) != (band["low"], band["high"])
    assert cli.main(["-q", "calibrate", "--model", str(tmp_path / "m.keras"), "--scores",
                     str(tmp_path / "val.csv"), "--uncertain-frames", str(tmp_path / "frames.csv"),
                     "--out", str(tmp_path / "c")]) != 0  # frames need their video table
