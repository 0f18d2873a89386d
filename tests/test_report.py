"""Report directory contents, metrics.json round trip, and the three commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dfd.evaluation import report
from dfd.evaluation.metrics import evaluate, prepare
from dfd.scores import write_table
from dfd_app.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tables(n=60, seed=0, prefix="v"):
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    y = rng.integers(0, 2, n)
    frames, videos = [], {}
    for name, strength in (("a", 1.5), ("b", 0.8)):
        rows = [(v, 0, k, 1 / (1 + np.exp(-(strength * (2 * lab - 1) + rng.normal(0, 1)))), name)
                for v, lab in zip(ids, y) for k in range(4)]
        f = pd.DataFrame(rows, columns=["video_id", "track", "frame_index", "p_fake", "model"])
        frames.append(f)
        g = f.groupby("video_id", sort=False)["p_fake"].mean()
        videos[name] = pd.DataFrame({"video_id": ids, "label": y, "p_fake": g.loc[ids].to_numpy(),
                                     "n_frames": 4, "n_faces": 4, "status": "ok", "error": "",
                                     "model": name, "aggregation": "mean"})
    t = videos["a"]
    t.loc[0, ["p_fake", "status", "error"]] = [np.nan, "no_face", "no face found"]
    frames[0] = frames[0][frames[0]["video_id"] != ids[0]]
    videos["b"].loc[0, ["p_fake", "status"]] = [np.nan, "no_face"]
    return videos, frames


def test_report_dir_contents_and_metrics_round_trip(tmp_path):
    videos, frames = _tables()
    v = videos["a"]
    res = evaluate(v, frames[0], n_boot=20)
    used, _ = prepare(v)
    curves = {"a": (used["label"].to_numpy(), used["p_fake"].to_numpy())}
    figs = report.render_figures(tmp_path, curves, "a", res, frames[0], used, n_timelines=1)
    assert set(figs) == {"roc", "pr", "confusion", "hist", "timeline_0"}
    report.write_report(tmp_path, res, v, figs, title="t")
    assert report.read_metrics(tmp_path) == res
    for p in figs.values():
        assert p.read_bytes()[:8] == PNG_MAGIC
    page = (tmp_path / report.HTML_FILE).read_text()
    assert page.count("data:image/png;base64,") == len(figs)
    assert 'src="http' not in page and "Video-level metrics" in page
    back = pd.read_csv(tmp_path / report.SCORES_FILE, dtype={"video_id": str})
    assert back["video_id"].tolist() == v["video_id"].tolist()
    np.testing.assert_allclose(back["p_fake"], v["p_fake"])


def test_one_class_report_does_not_crash(tmp_path):
    v = _tables()[0]["a"].assign(label=1)
    res = evaluate(v, n_boot=5)
    assert res["video"]["roc_auc"] is None and "one class" in res["video"]["undefined"]["roc_auc"]
    used, _ = prepare(v)
    figs = report.render_figures(tmp_path, {"a": (used["label"], used["p_fake"])}, "a", res)
    report.write_report(tmp_path, res, v, figs)
    assert json.loads((tmp_path / "metrics.json").read_text())["video"]["roc_auc"] is None


@pytest.fixture
def split_files(tmp_path):
    out = {}
    for split, seed in (("val", 1), ("test", 2)):
        videos, frames = _tables(80, seed, prefix=split)
        for name in ("a", "b"):
            out[f"{split}_{name}"] = write_table(videos[name], tmp_path / f"{split}_{name}.csv")
        out[f"{split}_a_frames"] = write_table(frames[0], tmp_path / f"{split}_a_frames.csv")
    return out


def test_evaluate_command(tmp_path, split_files, capsys):
    out = tmp_path / "rep"
    rc = main(["evaluate", "--scores", str(split_files["test_a"]), "--frame-scores",
               str(split_files["test_a_frames"]), "--val", str(split_files["val_a"]),
               "--threshold-policy", "youden", "--bootstrap", "10", "--out", str(out)])
    assert rc == 0
    m = report.read_metrics(out)
    assert m["threshold"]["policy"] == "youden" and m["threshold"]["chosen_on"] == "validation"
    assert m["counts"]["n_no_face"] == 1 and "frame" in m
    assert {"index.html", "metrics.json", "scores.csv", "roc.png"} <= {p.name for p in out.iterdir()}
    assert "roc_auc" in capsys.readouterr().out
    assert main(["evaluate", "--scores", str(split_files["test_a"]), "--threshold-policy", "f1",
                 "--out", str(out)]) == 2  # f1 without --val: a clear error, not a crash


def test_stack_and_compare_commands(tmp_path, split_files, capsys):
    sj, stacked = tmp_path / "stacker.json", tmp_path / "stacked.csv"
    assert main(["stack", "fit", "--scores", f"a={split_files['val_a_frames']}", "--scores",
                 f"b={split_files['val_b']}", "--labels", str(_labels(tmp_path, split_files["val_a"])),
                 "--oof", "3", "--out", str(sj)]) == 0
    assert json.loads(sj.read_text())["feature_names"] == ["a:mean", "a:vote", "a:max", "b"]
    assert main(["stack", "predict", "--stacker", str(sj), "--scores", f"a={split_files['test_a_frames']}",
                 "--scores", f"b={split_files['test_b']}", "--out", str(stacked)]) == 0
    s = pd.read_csv(stacked)
    assert len(s) == 80 and (s["status"] == "no_face").sum() == 1 and s["model"].eq("stacker").all()
    out = tmp_path / "cmp"
    capsys.readouterr()
    assert main(["compare", "--scores", f"a={split_files['test_a_frames']}", "--scores",
                 f"b={split_files['test_b']}", "--stacker", str(sj), "--bootstrap", "5",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table["model"].tolist() == ["a", "b", "average", "stacker"]
    assert list(table.columns[:8]) == ["model", "threshold", "accuracy", "precision", "recall", "f1",
                                       "roc_auc", "roc_auc_95ci"]
    assert table["n"].tolist() == [79, 79, 79, 79]
    assert (out / "comparison.md").read_text().startswith("| model |")
    assert "| stacker |" in capsys.readouterr().out
    assert set(report.read_metrics(out)["models"]) == {"a", "b", "average", "stacker"}
    # thresholds chosen on validation: the stacker, fitted on those very videos, gets its
    # threshold from out-of-fold scores, not from its in-sample ones
    out2 = tmp_path / "cmp2"
    assert main(["compare", "--scores", f"a={split_files['test_a_frames']}", "--scores",
                 f"b={split_files['test_b']}", "--val", f"a={split_files['val_a_frames']}",
                 "--val", f"b={split_files['val_b']}", "--stacker", str(sj),
                 "--threshold-policy", "youden", "--bootstrap", "5", "--out", str(out2)]) == 0
    models = report.read_metrics(out2)["models"]
    assert models["stacker"]["threshold"]["chosen_on"] == "out-of-fold validation scores"
    assert models["a"]["threshold"]["chosen_on"] == "validation"


def _labels(tmp_path, video_csv):
    t = pd.read_csv(video_csv)
    path = tmp_path / "labels.csv"
    t.assign(label=np.where(t["label"] == 1, "FAKE", "REAL"))[["video_id", "label"]].to_csv(path, index=False)
    return path
