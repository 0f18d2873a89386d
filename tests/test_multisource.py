"""Multi-source training data: per-source splits, frames of one video as one record, the
``original`` pairing key (manifest and shards)."""

from __future__ import annotations

import pandas as pd

from data_prep import manifests, split_cli, splits
from tests.conftest import shared_path


def two_sources() -> pd.DataFrame:
    """A big source of 2-item groups and a small one of 10-item groups (like DFDC + FF++)."""
    rows = []
    for g in range(300):
        for lab in (0, 1):
            rows.append({"video_id": f"a{g}_{lab}", "label": lab, "group": f"a{g}",
                         "source": "csv:big"})
    for g in range(20):
        for lab in (0, 1):
            for k in range(5):
                rows.append({"video_id": f"b{g}_{lab}_{k}", "label": lab, "group": f"b{g}",
                             "source": "csv:small"})
    df = pd.DataFrame(rows)
    for c in ("path", "member", "split", "kind"):
        df[c] = ""
    return df


def test_every_source_gets_its_own_split_in_the_set_fractions():
    items = two_sources()
    out = splits.split_by_group(items, seed=0)
    assert splits.check_leakage(out).ok
    for src, sub in out.groupby("source"):
        frac = sub["split"].value_counts(normalize=True)
        for name, want in zip(splits.DEFAULT_NAMES, splits.DEFAULT_FRACTIONS):
            assert abs(frac.get(name, 0.0) - want) < 0.06, (src, name, dict(frac))
            labels = sub[sub["split"] == name]["label"].value_counts()
            assert labels.get(0, 0) == labels.get(1, 0)  # stratified by label within source
    counts = splits.source_split_counts(out)
    assert counts.loc[("csv:small", "val"), "groups"] >= 2
    assert counts.loc[("csv:small", "test"), "total"] == \
        out[(out.source == "csv:small") & (out.split == "test")].shape[0]
    # pooled, as before: the small source's large groups all go to train
    pooled = splits.split_by_group(items, seed=0, source_col=None)
    assert set(pooled[pooled.source == "csv:small"]["split"]) == {"train"}


def test_a_group_in_two_sources_lands_in_one_split():
    items = two_sources()
    items.loc[items.video_id == "b0_0_0", "group"] = "a0"  # a shared identity
    out = splits.split_by_group(items, seed=0)
    assert splits.check_leakage(out).ok


def test_split_of_both_shared_crop_sets(tmp_path, capsys):
    srcs = [str(shared_path("data", "dfdc_faces")), str(shared_path("data", "ffpp_faces"))]
    parser = split_cli.argparse.ArgumentParser()
    split_cli.add_arguments_for("split", parser)
    out = tmp_path / "split.csv"
    assert split_cli.run_for("split", parser.parse_args(srcs + ["--out", str(out)])) == 0
    table = manifests.read_manifest(out).items
    for src, sub in table.groupby("source"):
        per = sub.groupby("split")["group"].nunique()
        assert set(per.index) == {"train", "val", "test"} and (per > 0).all(), (src, dict(per))
    ff = table[table.source == "csv:ffpp_faces"]
    assert ff["video"].nunique() == 280 and (ff["video"] != "").all()
    assert (table[table.source == "csv:dfdc_faces"]["video"] == "").all()
    capsys.readouterr()
    check = split_cli.argparse.ArgumentParser()
    split_cli.add_arguments_for("check-split", check)
    assert split_cli.run_for("check-split", check.parse_args([str(out)])) == 0
    text = capsys.readouterr().out
    assert "per source" in text and "csv:ffpp_faces" in text and "videos" in text
