"""dfd detect -> dfd evaluate: detect's CSV plus a truth table (video,label) joined by file name;
a table whose labels are predictions is refused, missing columns are named."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from dfd.evaluation import inputs, report
from dfd.labels import FAKE, REAL
from dfd_app.cli.main import main
from dfd_app.detect import output, pipeline

#: scores, true labels: the model is wrong on v02 (0.7 but REAL) and v05 (0.3 but FAKE)
SCORES = [0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.6, 0.4]
TRUTH = ["FAKE", "FAKE", "REAL", "REAL", "REAL", "FAKE", "FAKE", "REAL"]


def _detect_rows(paths, scores):
    """Rows as dfd detect makes them (its record and its CSV writer)."""
    from dfd.labels import verdict

    ctx = pipeline.DetectContext(scorer=lambda f: f, threshold=0.5)
    recs = []
    for path, p in zip(paths, scores):
        rec = pipeline._base_record(path, ctx)
        rec.update(p_fake=p, status="ok", n_frames=8, n_faces=8)
        rec["verdict"] = rec["label"] = verdict(p, 0.5)
        recs.append(rec)
    recs.append(pipeline._fail(pipeline._base_record("/data/videos/broken.mp4", ctx), "error",
                               "cannot decode"))
    return recs


@pytest.fixture
def detect_csv(tmp_path):
    paths = [f"/data/videos/part{i % 2}/v{i:02d}.mp4" for i in range(len(SCORES))]
    path = tmp_path / "detect.csv"
    with path.open("w", newline="") as fh:
        w = output.RowWriter(fh, "csv")
        for rec in _detect_rows(paths, SCORES):
            w.write(rec)
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"video": [f"v{i:02d}.mp4" for i in range(len(SCORES))] + ["unscored.mp4"],
                  "label": TRUTH + ["FAKE"]}).to_csv(truth, index=False)
    return path, truth


def _error(caplog) -> str:
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None
    return errors[0].getMessage()


def test_detect_csv_names_its_prediction_verdict(detect_csv):
    header = next(csv.reader(detect_csv[0].open()))
    assert header == pipeline.CSV_COLUMNS
    assert "verdict" in header and "threshold" in header and "label" not in header


def test_detect_then_evaluate_with_true_labels(detect_csv, tmp_path, capsys):
    scores, truth = detect_csv
    out = tmp_path / "rep"
    assert main(["evaluate", "--scores", str(scores), "--labels", str(truth), "--bootstrap", "0",
                 "--out", str(out)]) == 0
    m = report.read_metrics(out)
    assert m["video"]["n"] == len(SCORES)  # the error row is left out, all others joined
    assert m["video"]["accuracy"] == pytest.approx(6 / 8)  # against the truth, not itself
    assert m["counts"]["n_error"] == 0  # broken.mp4 has no truth: unknown label
    videos = inputs.load_videos(scores, truth)
    assert videos.set_index("video_id").loc["/data/videos/part0/v02.mp4", "label"] == REAL
    assert "accuracy" in capsys.readouterr().out


def test_detect_csv_without_labels_is_refused(detect_csv, tmp_path, caplog):
    scores, _ = detect_csv
    assert main(["evaluate", "--scores", str(scores), "--out", str(tmp_path / "r")]) == 2
    msg = _error(caplog)
    assert "dfd detect output" in msg and "prediction" in msg and "--labels" in msg


@pytest.mark.parametrize("old_layout", [True, False])
def test_a_renamed_detect_table_is_refused_not_scored_against_itself(detect_csv, tmp_path,
                                                                     caplog, old_layout):
    """The issue's case: video renamed to video_id, the predicted label read as the truth
    gave accuracy 1.0 without a word."""
    scores, _ = detect_csv
    t = pd.read_csv(scores).rename(columns={"video": "video_id"})
    if old_layout:  # the CSV of the previous release called its verdict `label`
        t = t.rename(columns={"verdict": "label"})
    else:  # today's CSV with a `label` column added by hand from the verdict
        t["label"] = t["verdict"]
    t.to_csv(tmp_path / "renamed.csv", index=False)
    assert main(["evaluate", "--scores", str(tmp_path / "renamed.csv"), "--bootstrap", "0",
                 "--out", str(tmp_path / "r")]) == 2
    assert "not the truth" in _error(caplog)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_the_old_detect_csv_is_still_read_with_labels(detect_csv, tmp_path):
    scores, truth = detect_csv
    old = pd.read_csv(scores).rename(columns={"verdict": "label"})
    old.to_csv(tmp_path / "old.csv", index=False)
    videos = inputs.load_videos(tmp_path / "old.csv", truth)
    assert videos["label"].tolist() == [FAKE if t == "FAKE" else REAL for t in TRUTH] + [-1]


def test_missing_columns_are_named(detect_csv, tmp_path, caplog):
    scores, _ = detect_csv
    pd.DataFrame({"name": ["v00.mp4"], "truth": ["FAKE"]}).to_csv(tmp_path / "bad.csv",
                                                                    index=False)
    assert main(["evaluate", "--scores", str(scores), "--labels", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "r")]) == 2
    msg = _error(caplog)
    assert "video (or video_id)" in msg and "'label'" in msg and "'name'" in msg
    caplog.clear()
    pd.DataFrame({"video": ["a.mp4"], "score": [0.3]}).to_csv(tmp_path / "s.csv", index=False)
    assert main(["evaluate", "--scores", str(tmp_path / "s.csv"), "--out",
                 str(tmp_path / "r")]) == 2
    assert "lacks column(s) ['p_fake']" in _error(caplog)
    caplog.clear()
    assert main(["evaluate", "--scores", str(scores), "--labels", str(scores), "--out",
                 str(tmp_path / "r")]) == 2  # detect output given as the truth
    assert "predictions" in _error(caplog)


def test_nothing_matching_names_both_sides(detect_csv, tmp_path):
    scores, _ = detect_csv
    pd.DataFrame({"video": ["other.mp4"], "label": [1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="no video of the scores matches.*v00.mp4.*other.mp4"):
        inputs.load_videos(scores, tmp_path / "t.csv")


def test_join_by_path_then_file_name_then_stem():
    got = inputs.match_videos(
        ["/a/x.mp4", "/b/x.mp4", "/c/y.mp4", "/d/z.avi", "/e/w.mp4"],
        ["/a/x.mp4", "b/x.mp4", "y.mp4", "z", "w.mp4", "w.avi"])
    # /a/x.mp4 by path; /b/x.mp4's name is ambiguous on both sides and its path differs;
    # y.mp4 by name; z by stem; w.mp4 by name (the stem w is ambiguous, never needed)
    assert got == {"/a/x.mp4": "/a/x.mp4", "/c/y.mp4": "y.mp4", "/d/z.avi": "z",
                   "/e/w.mp4": "w.mp4"}


def test_a_plain_score_table_still_carries_its_labels(tmp_path):
    t = pd.DataFrame({"video_id": ["a", "b"], "label": [1, 0], "p_fake": [0.8, 0.1],
                      "status": "ok"})
    t.to_csv(tmp_path / "v.csv", index=False)
    assert inputs.load_videos(tmp_path / "v.csv")["label"].tolist() == [1, 0]
    json.dumps(inputs.load_videos(tmp_path / "v.csv").to_dict())  # plain values
    pd.DataFrame({"video_id": ["a", "b"], "label": ["FAKE", "FAKE"]}).to_csv(
        tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="disagrees.*'b'"):
        inputs.load_videos(tmp_path / "v.csv", tmp_path / "t.csv")
