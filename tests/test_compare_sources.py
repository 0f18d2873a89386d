"""dfd compare per source: in-/cross-source ROC-AUC with intervals, labelled clips."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from dfd import presets
from dfd.evaluation import compare as cmp
from dfd_app.cli import main as cli
from mesonet_tf.weights import ASSETS_DIR


def _videos(seed, good_on=("csv:dfdc_faces",), n=40):
    """A video table over two sources; scores separate the labels only on ``good_on``."""
    rng = np.random.default_rng(seed)
    rows = []
    for source in ("csv:dfdc_faces", "csv:ffpp_faces"):
        for i in range(n):
            label = i % 2
            p = 0.2 + 0.6 * label + rng.uniform(-0.1, 0.1) if source in good_on \
                else rng.uniform(0, 1)
            rows.append({"video_id": f"{source[4:8]}{i}", "label": label, "p_fake": p,
                         "n_frames": 1, "n_faces": 1, "status": "ok", "error": "",
                         "model": "m", "aggregation": "mean", "source": source})
    return pd.DataFrame(rows)


def test_source_matching_and_trained_on(tmp_path):
    assert cmp.source_matches("csv:dfdc_faces", ["dfdc"])
    assert cmp.source_matches("csv:dfdc_faces", ["csv:dfdc_faces"])
    assert not cmp.source_matches("csv:ffpp_faces", ["dfdc"])
    assert cmp.trained_on("dfdc+ffpp")["fake_sources"] == ["dfdc", "ffpp"]
    assert cmp.trained_on("none")["fake_sources"] == []
    presets.write_preset(presets.ModelPreset(
        name="r", extra={"train_sources": ["csv:dfdc_faces", "csv:ffpp_faces"],
                         "fake_sources": []}), tmp_path / "run")
    assert cmp.trained_on(tmp_path / "run") == {
        "fake_sources": [], "train_sources": ["csv:dfdc_faces", "csv:ffpp_faces"],
        "train_split": "all"}  # no split recorded: dfd train used every split
    presets.write_preset(presets.ModelPreset(
        name="r", extra={"train_sources": ["csv:dfdc_faces"], "fake_sources": [],
                         "train_split": "train"}), tmp_path / "split")
    assert cmp.trained_on(tmp_path / "split")["train_split"] == "train"
    # any file of a run folder stands for the run (its preset.json), a .json file too
    (tmp_path / "split" / "config.json").write_text('{"config": {}}')
    assert cmp.trained_on(tmp_path / "split" / "config.json")["train_split"] == "train"
    # a package asset's preset, <stem>.json beside <stem>.keras, given by its own path
    (tmp_path / "split" / "preset.json").rename(tmp_path / "shipped.json")
    (tmp_path / "shipped.keras").write_bytes(b"")
    assert cmp.trained_on(tmp_path / "shipped.json")["train_split"] == "train"
    (tmp_path / "shipped.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="shipped.json is not a valid preset: it holds a JSON "
                                         "list, not an object"):
        cmp.trained_on(tmp_path / "shipped.json")
    # the shipped default, by its file or its preset: self-blended fakes of DFDC's train faces
    for f in ("dfd_default.keras", "dfd_default.json"):
        got = cmp.trained_on(ASSETS_DIR / f)
        assert got["fake_sources"] == [] and got["train_sources"] == ["csv:dfdc_faces"]
    # a list given as text says whose fakes, not whose real faces nor which split
    assert cmp.trained_on("none")["train_sources"] is None
    assert cmp.trained_on("dfdc")["train_split"] is None
    presets.write_preset(presets.ModelPreset(name="old"), tmp_path / "old")
    with pytest.raises(ValueError, match="old.*fake_sources"):
        cmp.trained_on(tmp_path / "old")
    with pytest.raises(ValueError, match="'no/such/run'"):
        cmp.trained_on("no/such/run")
    for path_like in ("~/runs/x", "./lite0", "preset.json", "model.keras", "Meso4_DF.h5",
                      "runs\\x"):
        with pytest.raises(ValueError, match="neither an existing run folder"):
            cmp.trained_on(path_like)


def test_a_trained_on_source_that_matches_no_tested_source_is_named(caplog):
    tests = {"m": _videos(0)}
    with caplog.at_level(logging.WARNING, logger="dfd.evaluation.compare"):
        per = cmp.per_source_table(tests, {"m": cmp.trained_on("dfcd")}, bootstrap=0)
    assert set(per["kind"]) == {"cross-source"}
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("trained-on for m: ['dfcd'] match(es) no tested source")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dfd.evaluation.compare"):
        cmp.per_source_table(tests, {"m": cmp.trained_on("dfdc+celebdf")}, bootstrap=0)
    assert "['celebdf']" in caplog.text and "dfdc'" not in caplog.text.split("tested")[0]


def test_per_source_auc_kind_and_interval():
    tests = {"dfdc_only": _videos(0), "sbi": _videos(1, good_on=())}
    per = cmp.per_source_table(tests, {"dfdc_only": cmp.trained_on("dfdc"),
                                       "sbi": cmp.trained_on("none")}, bootstrap=200)
    got = per.set_index(["model", "source"])
    assert got.loc[("dfdc_only", "csv:dfdc_faces"), "kind"] == "in-source"
    assert got.loc[("dfdc_only", "csv:dfdc_faces"), "roc_auc"] == 1.0
    assert got.loc[("dfdc_only", "csv:ffpp_faces"), "kind"] == "cross-source"
    assert got.loc[("sbi", "csv:dfdc_faces"), "kind"] == "cross-source"
    assert got.loc[("dfdc_only", "csv:ffpp_faces"), "n"] == 40
    assert got.loc[("dfdc_only", "csv:ffpp_faces"), "n_fake"] == 20
    lo, hi = (float(x) for x in got.loc[("dfdc_only", "csv:ffpp_faces"), "roc_auc_95ci"]
              .strip("[]").split(","))
    auc = got.loc[("dfdc_only", "csv:ffpp_faces"), "roc_auc"]
    assert lo < auc < hi and hi - lo > 0.1  # 40 random videos: a wide interval
    summary = cmp.generalisation_summary(per).set_index("model")
    assert summary.loc["dfdc_only", "mean_in_source_roc_auc"] == 1.0
    assert summary.loc["dfdc_only", "mean_cross_source_roc_auc"] == pytest.approx(auc)
    assert summary.loc["sbi", "mean_in_source_roc_auc"] is None or \
        np.isnan(summary.loc["sbi", "mean_in_source_roc_auc"])
    assert summary.loc["sbi", "cross_source_sources"] == "dfdc_faces+ffpp_faces"
    # nothing said about what it trained on: unknown, never in-source
    assert set(cmp.per_source_table({"x": _videos(0)}, bootstrap=0)["kind"]) == {"unknown"}
    with pytest.raises(ValueError, match="'typo'"):
        cmp.per_source_table(tests, {"typo": cmp.trained_on("dfdc")})


def _clip_data(tmp_path):
    d = tmp_path / "data"
    (d / "dfdc_videos").mkdir(parents=True)
    (d / "other_videos").mkdir()
    (d / "dfdc_videos" / "metadata.json").write_text(json.dumps(
        {"a.mp4": {"label": "FAKE"}, "b.mp4": {"label": "REAL"}, "c.mp4": {"label": "FAKE"}}))
    (d / "other_videos" / "labels.csv").write_text(
        "file,label,dataset,note\nr.mp4,REAL,x,\nf.mp4,FAKE,y,\nu.mp4,UNKNOWN,z,\n")
    return d


def test_clip_labels_and_table(tmp_path):
    d = _clip_data(tmp_path)
    labels = cmp.clip_labels(d)
    assert labels.to_dict() == {"a.mp4": 1, "b.mp4": 0, "c.mp4": 1, "r.mp4": 0, "f.mp4": 1}
    t = pd.DataFrame({"video": ["/x/a.mp4", "/x/b.mp4", "/y/r.mp4", "/y/f.mp4", "/y/u.mp4",
                                "/x/c.mp4"],
                      "p_fake": [0.9, 0.1, 0.4, 0.6, 0.5, None],
                      "status": ["ok", "ok", "ok", "ok", "ok", "no_face"]})
    row = cmp.clip_table({"m": t}, labels, bootstrap=50).iloc[0]
    assert row["roc_auc"] == 1.0 and row["n"] == 4 and row["n_unscored"] == 1
    assert row["accuracy"] == 1.0 and row["n_fake"] == 2
    t.loc[0, "p_fake"] = 0.05  # a.mp4 now scored lowest
    row = cmp.clip_table({"m": t}, labels, bootstrap=0).iloc[0]
    assert row["roc_auc"] == pytest.approx(0.5) and row["accuracy"] == 0.75


def test_dfd_compare_writes_per_source_and_clip_tables(tmp_path, capsys):
    d = _clip_data(tmp_path)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _videos(0).to_csv(a, index=False)
    _videos(1, good_on=("csv:ffpp_faces",)).to_csv(b, index=False)
    det = tmp_path / "det.csv"
    pd.DataFrame({"video": ["a.mp4", "b.mp4"], "p_fake": [0.7, 0.2],
                  "status": ["ok", "ok"]}).to_csv(det, index=False)
    rc = cli.main(["compare", "--model", f"dfdc={a}", "--model", f"ffpp={b}",
                   "--model", f"sbi={b}", "--trained-on", "sbi=none",  # no in-source: NaN
                   "--trained-on", "dfdc=dfdc", "--trained-on", "ffpp=ffpp",
                   "--clips", f"dfdc={det}", "--clip-labels", str(d),
                   "--bootstrap", "50", "--out", str(tmp_path / "out")])
    assert rc == 0
    per = pd.read_csv(tmp_path / "out" / "per_source.csv")
    assert len(per) == 6 and set(per["kind"]) == {"in-source", "cross-source"}
    gen = pd.read_csv(tmp_path / "out" / "generalisation.csv").set_index("model")
    assert gen.loc["dfdc", "mean_in_source_roc_auc"] == 1.0
    assert gen.loc["ffpp", "mean_in_source_roc_auc"] == 1.0
    assert gen.loc["ffpp", "cross_source_sources"] == "dfdc_faces"
    assert np.isnan(gen.loc["sbi", "mean_in_source_roc_auc"])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["generalisation"]["summary"][2]["mean_in_source_roc_auc"] is None
    clips = pd.read_csv(tmp_path / "out" / "clips.csv")
    assert clips.loc[0, "n"] == 2 and clips.loc[0, "n_unscored"] == 3
    out = capsys.readouterr().out
    assert "In-source vs cross-source" in out and "Labelled clips" in out
    # a --trained-on that cannot be read fails before any figure is computed or written
    rc = cli.main(["compare", "--model", f"dfdc={a}", "--trained-on", "dfdc=runs/gone",
                   "--out", str(tmp_path / "bad")])
    assert rc == 2 and not (tmp_path / "bad").exists()


def test_a_paired_interval_sees_what_two_unpaired_ones_cannot():
    """Two models sharing most of their noise (as two fine-tunings of one model do): the
    better one's lead shows in the paired interval, not in the overlap of two intervals."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    shared = rng.normal(size=200)
    ref, better = shared + 0.5 * y, shared + 0.8 * y + rng.normal(0, 0.05, 200)
    d, lo, hi = cmp.paired_auc_difference(y, ref, better, n_boot=300)
    a_ref, lo_ref, hi_ref = cmp.auc_ci(y, ref, 300)
    a_b, lo_b, hi_b = cmp.auc_ci(y, better, 300)
    assert d == pytest.approx(a_b - a_ref) and d > 0
    assert lo > 0 and lo < d < hi  # paired: the lead is real
    assert lo_b < hi_ref  # unpaired: the two intervals overlap
    assert cmp.paired_auc_difference(y, ref, ref, n_boot=50) == (0.0, 0.0, 0.0)
    assert cmp.paired_auc_difference(np.zeros(5), ref[:5], ref[:5]) == (None, None, None)


def test_paired_table_per_source_on_shared_videos(tmp_path):
    ref = _videos(0)
    other = _videos(1, good_on=("csv:ffpp_faces",))
    unscored = other["video_id"] == "ffpp3"  # one video the other model found no face in
    other.loc[unscored, ["status", "p_fake"]] = ["no_face", np.nan]
    got = cmp.paired_table({"ref": ref, "other": other}, "ref", bootstrap=100)
    got = got.set_index("source")
    assert list(got.index) == ["csv:dfdc_faces", "csv:ffpp_faces"]
    assert (got["reference"] == "ref").all() and (got["model"] == "other").all()
    assert got.loc["csv:dfdc_faces", "n"] == 40 and got.loc["csv:ffpp_faces", "n"] == 39
    assert got.loc["csv:ffpp_faces", "roc_auc"] == 1.0
    row = got.loc["csv:dfdc_faces"]
    assert row["reference_roc_auc"] == 1.0 and row["difference"] == pytest.approx(
        row["roc_auc"] - 1.0)
    lo, hi = (float(x) for x in row["difference_95ci"].strip("[]").split(","))
    assert lo <= row["difference"] <= hi < 0  # the reference wins on its own source
    with pytest.raises(ValueError, match="reference 'nope'.*'other', 'ref'"):
        cmp.paired_table({"ref": ref, "other": other}, "nope")
    relabelled = other.assign(label=1 - other["label"])
    with pytest.raises(ValueError, match="disagree on the labels"):
        cmp.paired_table({"ref": ref, "other": relabelled}, "ref")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    ref.to_csv(a, index=False)
    other.to_csv(b, index=False)
    assert cli.main(["compare", "--scores", f"ref={a}", "--scores", f"other={b}",
                     "--reference", "ref", "--no-average", "--bootstrap", "50",
                     "--out", str(tmp_path / "out")]) == 0
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    assert len(paired) == 2 and set(paired["n"]) == {40, 39}
    assert "Against the reference" in (tmp_path / "out" / "comparison.md").read_text()
