"""dfd.evaluation.metrics against hand-computed values, ties and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dfd.evaluation import metrics as M

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def test_threshold_metrics_by_hand():
    r = M.threshold_metrics(Y, P, 0.5)  # predictions 0, 0, 0, 1
    assert r["confusion_matrix"] == [[2, 0], [1, 1]]
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["balanced_accuracy"] == pytest.approx(0.75)
    assert r["precision"] == pytest.approx(1.0)
    assert r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["per_class"]["REAL"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                      "f1": pytest.approx(0.8), "support": 2}


def test_score_metrics_by_hand():
    r = M.score_metrics(Y, P)
    assert r["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (real, fake) pairs ordered
    assert r["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert r["log_loss"] == pytest.approx(ll)
    assert r["eer"] == pytest.approx(0.5)  # at threshold 0.4: FPR = FNR = 0.5


def test_auc_on_scores_not_labels_and_ties():
    y, p = [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]
    # pairs: tie (0.5), 3 ordered -> 3.5 / 4
    assert M.score_metrics(y, p)["roc_auc"] == pytest.approx(0.875)
    r = M.threshold_metrics(y, p, 0.5)  # a tie at the threshold counts as FAKE (>=)
    assert r["confusion_matrix"] == [[1, 1], [0, 2]]
    # thresholded AUC (the original study's mistake) would differ: 0.75
    assert M.score_metrics(y, (np.array(p) >= 0.5).astype(float))["roc_auc"] == pytest.approx(0.75)


def test_eer_interpolates_between_points():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.7, 0.3, 0.8, 0.9]
    eer, _ = M.equal_error_rate(y, p)
    assert eer == pytest.approx(1 / 3)


def test_one_class_gives_null_with_reason():
    r = M.all_metrics([1, 1, 1], [0.2, 0.9, 0.7])
    assert r["roc_auc"] is None and "one class" in r["undefined"]["roc_auc"]
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert r["log_loss"] is not None
    assert r["precision"] == pytest.approx(1.0)


def test_no_predicted_fake_precision_undefined():
    r = M.threshold_metrics([0, 1], [0.1, 0.2], 0.5)
    assert r["precision"] is None and "predicted FAKE" in r["undefined"]["precision"]
    assert r["recall"] == 0.0


def test_empty_set():
    r = M.all_metrics([], [])
    assert r["n"] == 0 and r["accuracy"] is None and r["roc_auc"] is None
    assert "empty" in r["undefined"]["roc_auc"]


def test_nan_scores_rejected_with_message():
    with pytest.raises(ValueError, match="NaN"):
        M.score_metrics([0, 1], [0.3, float("nan")])


def test_log_loss_clip_option():
    assert M.score_metrics([1], [0.0])["log_loss"] == pytest.approx(-math.log(1e-15))
    assert M.score_metrics([1], [0.0], clip=0.01)["log_loss"] == pytest.approx(-math.log(0.01))


def _table():
    return pd.DataFrame({
        "video_id": ["a", "b", "c", "d", "e", "f"],
        "label": [1, 0, 1, 0, "FAKE", -1],
        "p_fake": [0.9, 0.2, float("nan"), float("nan"), 0.7, 0.5],
        "status": ["ok", "ok", "no_face", "error", "ok", "ok"],
    })


def test_prepare_missing_policies():
    used, acc = M.prepare(_table())
    assert list(used["video_id"]) == ["a", "b", "e"]
    assert acc == {"n_rows": 6, "n_unknown_label": 1, "n_no_face": 1, "n_error": 1, "n_nan_score": 0,
                   "missing_policy": "exclude", "n_used": 3, "n_unscored_excluded": 2}
    used, _ = M.prepare(_table(), "as_fake")
    assert used.set_index("video_id").loc[["c", "d"], "p_fake"].tolist() == [1.0, 1.0]
    used, _ = M.prepare(_table(), "as_half")
    assert used.set_index("video_id").loc["c", "p_fake"] == 0.5
    with pytest.raises(ValueError, match="missing-score policy"):
        M.prepare(_table(), "zero")


def test_prepare_rejects_out_of_range():
    t = _table().assign(p_fake=[1.5, 0.2, 0.1, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*'a'"):
        M.prepare(t)


def test_apply_labels_fills_and_detects_conflict():
    t = pd.DataFrame({"video_id": ["a", "b"], "label": [-1, 1], "p_fake": [0.1, 0.9]})
    out = M.apply_labels(t, pd.DataFrame({"video_id": ["a"], "label": ["REAL"]}))
    assert out["label"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="disagrees.*'b'"):
        M.apply_labels(t, {"b": "real"})


def test_choose_threshold_policies_by_hand():
    assert M.choose_threshold([], [], "fixed", 0.3)["value"] == 0.3
    f1 = M.choose_threshold(Y, P, "f1")  # F1 at 0.8/0.4/0.35/0.1: 2/3, 1/2, 4/5, 2/3
    assert f1["value"] == pytest.approx(0.35) and f1["val_objective"] == pytest.approx(0.8)
    yj = M.choose_threshold(Y, P, "youden")  # J = 0.5 at 0.8 and at 0.35: the higher wins
    assert yj["value"] == pytest.approx(0.8) and yj["val_objective"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        M.choose_threshold([1, 1], [0.2, 0.3], "f1")


def test_evaluate_applies_validation_threshold_unchanged():
    val = pd.DataFrame({"video_id": list("wxyz"), "label": Y, "p_fake": P})
    test = pd.DataFrame({"video_id": list("abcd"), "label": [0, 0, 1, 1], "p_fake": [0.3, 0.36, 0.34, 0.9]})
    r = M.evaluate(test, val=val, policy="f1", n_boot=0)
    assert r["threshold"]["value"] == pytest.approx(0.35) and r["threshold"]["policy"] == "f1"
    assert r["video"]["confusion_matrix"] == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="--val"):
        M.evaluate(test, policy="youden")


def test_bootstrap_resamples_videos_not_frames():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = np.clip(0.3 * y + rng.random(40) * 0.7, 0, 1)
    video = M.bootstrap_ci(y, p, None, n_boot=50, seed=3)
    # every video repeated as 5 identical frames: resampling videos gives the same intervals
    fy, fp, fg = np.repeat(y, 5), np.repeat(p, 5), np.repeat(np.arange(40), 5)
    frame = M.bootstrap_ci(fy, fp, fg, n_boot=50, seed=3)
    assert frame["n_groups"] == 40
    for k in ("accuracy", "roc_auc", "f1"):
        assert frame[k]["low"] == pytest.approx(video[k]["low"])
        assert frame[k]["high"] == pytest.approx(video[k]["high"])
    point = M.all_metrics(y, p)
    assert video["roc_auc"]["low"] <= point["roc_auc"] <= video["roc_auc"]["high"]
    assert video["roc_auc"]["high"] - video["roc_auc"]["low"] > 0


def test_evaluate_frame_level_uses_video_labels():
    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "label": [1, 0, 1], "p_fake": [0.8, 0.3, np.nan],
                           "status": ["ok", "ok", "no_face"]})
    frames = pd.DataFrame({"video_id": ["a", "a", "b", "z"], "track": 0, "frame_index": [0, 1, 0, 0],
                           "p_fake": [0.9, 0.4, 0.2, 0.9]})
    r = M.evaluate(videos, frames, n_boot=10)
    assert r["frame"]["n"] == 3 and r["frame"]["n_videos"] == 2  # unlabelled 'z' left out
    assert r["frame"]["confusion_matrix"] == [[1, 0], [1, 1]]
    assert r["counts"]["n_no_face"] == 1
