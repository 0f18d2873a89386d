"""Identity-safe splits: determinism, no group across splits, the leakage check and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_prep.manifests import load_manifest, read_manifest
from data_prep.splits import check_leakage, random_split_by_item, split_by_group, split_counts
from dfd_app.cli import main as cli
from tests.conftest import shared_path


def paired_items(n_groups=200, seed=0):
    """Each group: one REAL and one FAKE made from it (like dfdc_faces), plus some lone fakes."""
    rows = []
    for g in range(n_groups):
        rows.append({"video_id": f"r{g}", "label": 0, "group": f"g{g}", "split": ""})
        rows.append({"video_id": f"f{g}", "label": 1, "group": f"g{g}", "split": ""})
        if g % 4 == 0:
            rows.append({"video_id": f"x{g}", "label": 1, "group": f"h{g}", "split": ""})
    return pd.DataFrame(rows)


def test_groups_never_span_and_fractions_hold():
    items = paired_items()
    out = split_by_group(items, seed=3)
    assert check_leakage(out).ok
    share = out["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.02)
    assert share["val"] == pytest.approx(0.15, abs=0.02)
    assert share["test"] == pytest.approx(0.15, abs=0.02)
    fake_share = out.groupby("split")["label"].mean()
    assert (fake_share - items["label"].mean()).abs().max() < 0.03  # stratified
    assert out["given_split"].tolist() == [""] * len(items)


def test_deterministic_and_order_independent():
    items = paired_items()
    a = split_by_group(items, seed=1).set_index("video_id")["split"]
    b = split_by_group(items, seed=1).set_index("video_id")["split"]
    shuffled = items.sample(frac=1.0, random_state=7)
    c = split_by_group(shuffled, seed=1).set_index("video_id")["split"]
    d = split_by_group(items, seed=2).set_index("video_id")["split"]
    assert a.equals(b)
    assert a.equals(c.loc[a.index])
    assert not a.equals(d)


def test_custom_fractions_names_and_errors():
    items = paired_items(50)
    out = split_by_group(items, fractions=(0.5, 0.5), names=("a", "b"), stratify=False)
    assert set(out["split"]) == {"a", "b"} and check_leakage(out).ok
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(items, fractions=(0.5, 0.6), names=("a", "b"))
    with pytest.raises(ValueError, match="fractions"):
        split_by_group(items, fractions=(0.5, 0.5))
    bad = items.copy()
    bad.loc[0, "group"] = ""
    with pytest.raises(ValueError, match="empty 'group'"):
        split_by_group(bad)


def test_tiny_set_still_assigns_everything():
    items = paired_items(2)
    out = split_by_group(items)
    assert set(out["split"]) <= {"train", "val", "test"} and (out["split"] != "").all()
    assert check_leakage(out).ok


def test_use_given_keeps_manifest_splits():
    items = paired_items(40)
    items.loc[items["group"] == "g0", "split"] = "test"
    items.loc[items["group"] == "g1", "split"] = "train"
    out = split_by_group(items, use_given=True, seed=0)
    assert set(out.loc[out["group"] == "g0", "split"]) == {"test"}
    assert set(out.loc[out["group"] == "g1", "split"]) == {"train"}
    assert check_leakage(out).ok
    assert (out.loc[out["group"] == "g0", "given_split"] == "test").all()


def test_random_item_split_leaks_and_report_names_groups():
    items = paired_items(100)
    leaky = random_split_by_item(items, seed=0)
    report = check_leakage(leaky)
    assert not report.ok and report.n_leaking > 20
    msg = report.message(limit=20)
    first = report.leaking["group"].iloc[0]
    assert first in msg and f"and {report.n_leaking - 20} more" in msg
    row = report.leaking.iloc[0]
    assert "," in row["splits"] and row["n_items"] == 2


def test_leakage_ignores_unassigned_and_counts_splits():
    items = pd.DataFrame({"group": ["a", "a", "b", "b", "b"],
                          "split": ["train", "", "train", "val", "val"]})
    report = check_leakage(items)
    assert report.leaking["group"].tolist() == ["b"]
    assert report.leaking["counts"].iloc[0] == "train:1, val:2"
    with pytest.raises(ValueError, match="no column 'fold'"):
        check_leakage(items, split_col="fold")


def test_split_counts_table():
    out = split_by_group(paired_items(20))
    table = split_counts(out)
    assert table["total"].sum() == len(out)
    assert list(table.columns[:2]) == ["REAL", "FAKE"]


def make_dfdc(root, n=30):
    root.mkdir()
    meta = {}
    for i in range(n):
        meta[f"r{i}.mp4"] = {"label": "REAL", "split": "train"}
        meta[f"f{i}.mp4"] = {"label": "FAKE", "split": "train", "original": f"r{i}.mp4"}
    (root / "metadata.json").write_text(json.dumps(meta))
    for name in meta:
        (root / name).write_bytes(b"x")
    return root


def test_cli_split_then_check(tmp_path, capsys):
    src = make_dfdc(tmp_path / "dfdc")
    out = tmp_path / "split.csv"
    rc = cli.main(["split", str(src), "--out", str(out), "--seed", "4",
                   "--fractions", "0.6", "0.2", "0.2"])
    printed = capsys.readouterr().out
    assert rc == 0 and "train" in printed and "wrote 60 items in 30 groups" in printed
    table = read_manifest(out).items
    assert len(table) == 60 and set(table["split"]) == {"train", "val", "test"}
    assert cli.main(["check-split", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK:")

    leaky = random_split_by_item(table, seed=1)
    leaky.to_csv(tmp_path / "leaky.csv", index=False)
    assert cli.main(["check-split", str(tmp_path / "leaky.csv"), "--show", "2"]) == 1
    msg = capsys.readouterr().out
    assert msg.startswith("LEAK:") and "more" in msg
    assert cli.main(["check-split", str(tmp_path / "leaky.csv"), "--group-col", "who"]) == 2


def test_cli_split_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli.main(["split", str(tmp_path / "empty"), "--out", str(tmp_path / "o.csv")]) == 2
    src = make_dfdc(tmp_path / "dfdc", n=3)
    assert cli.main(["split", str(src), "--out", str(tmp_path / "o.csv"),
                     "--fractions", "0.5", "0.2"]) == 2


# ---------------------------------------------------------------- research data (skips)


def test_shared_faces_split_by_original_passes_random_fails():
    m = load_manifest(shared_path("data", "dfdc_faces"))
    safe = split_by_group(m.items, seed=0)
    assert check_leakage(safe).ok
    counts = safe.groupby("split")["label"].agg(["size", "mean"])
    assert np.allclose(counts["mean"], 0.5, atol=0.01)
    assert counts.loc["train", "size"] == pytest.approx(8400, abs=10)
    leaky = random_split_by_item(m.items, seed=0)
    report = check_leakage(leaky)
    assert not report.ok and report.n_leaking > 2000  # each group holds 2 items


def test_shared_dfdc_videos_split():
    m = load_manifest(shared_path("data", "dfdc_videos"))
    out = split_by_group(m.items, seed=0)
    assert check_leakage(out).ok and len(out) == 8
    kept = split_by_group(m.items, use_given=True)
    assert set(kept["split"]) == {"train"}
