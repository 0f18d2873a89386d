"""Multi-source training data: per-source splits, frames of one video as one record, the
``original`` pairing key (manifest and shards)."""

from __future__ import annotations

import io
import tarfile

import pandas as pd
import pytest

from data_prep import manifests, prep, splits
from dfd import readers, schema
from dfd_app.cli import split as split_cli
from tests.conftest import jpeg_bytes, shared_path


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


def _jpeg(value: int) -> bytes:
    return jpeg_bytes(value, 32)


@pytest.fixture
def ffpp_like(tmp_path):
    """An FF++-style crop set: 2 real and 2 fake videos of 4 frames, listed out of order, one
    fake frame broken; plus a DFDC-style set (one crop per video)."""
    root = tmp_path / "ffpp_like"
    root.mkdir()
    rows, blobs = [], {}
    for tgt, src in (("x:000", "x:003"), ("x:003", "x:000")):
        for label in ("REAL", "FAKE"):
            for frame in (2, 0, 3, 1):
                kind = "real" if label == "REAL" else "fake"
                name = f"{kind}_{tgt[2:]}_{src[2:] + '_' if label == 'FAKE' else ''}{frame}.jpg"
                broken = label == "FAKE" and tgt == "x:003" and frame == 3
                blobs[name] = b"broken" if broken else _jpeg(40 * frame + (100 if label == "FAKE" else 0))
                rows.append({"file": name, "label": label, "group": "x:000", "target": tgt,
                             "source": src if label == "FAKE" else "", "frame": frame,
                             "archive": "faces-00.tar"})
    with tarfile.open(root / "faces-00.tar", "w") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    dfdc = tmp_path / "dfdc_like"
    dfdc.mkdir()
    for i in range(4):
        (dfdc / f"c{i}.jpg").write_bytes(_jpeg(50 + i))
    pd.DataFrame({"file": [f"c{i}.jpg" for i in range(4)], "label": ["REAL", "FAKE"] * 2,
                  "original": ["o0.mp4", "o0.mp4", "o1.mp4", "o1.mp4"]}
                 ).to_csv(dfdc / "metadata.csv", index=False)
    return root, dfdc


def test_manifest_video_and_original_keys(ffpp_like):
    root, dfdc = ffpp_like
    items = manifests.merge_manifests([manifests.load_manifest(root),
                                       manifests.load_manifest(dfdc)]).items.set_index("video_id")
    assert items.loc["fake_000_003_2.jpg", "video"] == "x:000_003"
    assert items.loc["real_003_1.jpg", "video"] == "x:003"
    assert items.loc["fake_000_003_2.jpg", "original"] == "x:000"  # the target: its real video
    assert items.loc["real_000_0.jpg", "original"] == "x:000"
    assert items.loc["c1.jpg", "original"] == "o0.mp4" and items.loc["c1.jpg", "video"] == ""


def _records(out) -> dict:
    import tensorflow as tf

    files = [str(f) for f in schema.resolve_shards(out)]
    return {r["video_id"]: r for r in (schema.decode_record(x.numpy())
                                       for x in tf.data.TFRecordDataset(files))}


def test_prep_writes_one_record_per_video_in_frame_order(ffpp_like, tmp_path):
    root, dfdc = ffpp_like
    out = tmp_path / "shards"
    res = prep.run_prep(prep.PrepConfig(sources=[str(root), str(dfdc)], out_dir=str(out)))
    assert (res.written, res.failed, res.faces) == (4 + 4, 1, 15 + 4)
    recs = _records(out)
    assert set(recs) == {"x:000", "x:003", "x:000_003", "x:003_000", "c0.jpg", "c1.jpg",
                         "c2.jpg", "c3.jpg"}
    fake = recs["x:000_003"]
    assert list(fake["frame_index"]) == [0, 1, 2, 3] and fake["label"] == 1
    means = [int(schema.decode_image(f).mean()) for f in fake["face"]]
    assert all(abs(m - (100 + 40 * k)) <= 2 for k, m in enumerate(means)), means
    assert list(recs["x:003_000"]["frame_index"]) == [0, 1, 2]  # the broken frame left out
    assert fake["original"] == "x:000" and recs["x:000"]["original"] == "x:000"
    assert recs["c1.jpg"]["original"] == "o0.mp4" and len(recs["c1.jpg"]["face"]) == 1
    assert list(prep.read_failures(out)["video_id"]) == ["fake_003_000_3.jpg"]
    limited = prep.run_prep(prep.PrepConfig(sources=[str(root)], out_dir=str(tmp_path / "l"),
                                            limit=2))
    assert (limited.written, limited.faces) == (2, 8)  # two whole videos
    # resumable: a re-run finds every video done
    again = prep.run_prep(prep.PrepConfig(sources=[str(root), str(dfdc)], out_dir=str(out)))
    assert again.written == 0 and again.skipped == 16 + 4


def test_a_shard_written_without_original_still_reads(tmp_path):
    import tensorflow as tf

    rec = schema.FaceRecord(video_id="old", label=1, faces=[_jpeg(9)], frame_indices=[0])
    data = schema.encode_record(rec)
    ex = tf.train.SequenceExample.FromString(data)
    assert schema.ORIGINAL not in ex.context.feature  # as every shard written before the key
    path = tmp_path / "old.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(data)
    got = next(readers.records(path).as_numpy_iterator())
    assert got[schema.ORIGINAL] == b"" and got[schema.VIDEO_ID] == b"old"
    new = schema.decode_record(schema.encode_record(
        schema.FaceRecord(video_id="new", label=1, faces=[_jpeg(9)], frame_indices=[0],
                          original="o.mp4")))
    assert new["original"] == "o.mp4"


@pytest.mark.slow
def test_prep_of_the_shared_ffpp_crops_gives_one_record_per_video(tmp_path):
    src = shared_path("data", "ffpp_faces")
    res = prep.run_prep(prep.PrepConfig(sources=[str(src)], out_dir=str(tmp_path / "s")))
    assert (res.written, res.failed, res.faces) == (280, 0, 2796)
    recs = _records(tmp_path / "s")
    assert all(list(r["frame_index"]) == sorted(r["frame_index"]) for r in recs.values())
    reals = {v for v, r in recs.items() if r["label"] == 0}
    fakes = [r for r in recs.values() if r["label"] == 1]
    assert len(reals) == 140 and len(fakes) == 140
    assert all(r["original"] in reals for r in fakes)  # every fake pairs with a real record


def test_a_video_mixing_labels_is_left_out_with_a_problem(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    for name in ("a_0.jpg", "a_1.jpg", "b_0.jpg"):
        (root / name).write_bytes(_jpeg(5))
    pd.DataFrame({"file": ["a_0.jpg", "a_1.jpg", "b_0.jpg"], "label": ["REAL", "FAKE", "REAL"],
                  "group": "g", "frame": [0, 1, 0]}).to_csv(root / "metadata.csv", index=False)
    m = manifests.load_manifest(root)
    assert list(m.items["video_id"]) == ["b_0.jpg"] and list(m.items["video"]) == ["b"]
    assert m.errors["problem"].str.contains("video 'a' mixes").sum() == 2


def test_ffpp_videos_know_their_real_original(tmp_path):
    ff = tmp_path / "ffpp"
    names = ["original_sequences/youtube/c23/videos/000.mp4",
             "original_sequences/youtube/c40/videos/000.mp4",
             "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
             "manipulated_sequences/Deepfakes/c40/videos/000_003.mp4",
             "original_sequences/actors/c23/videos/01__walking.mp4",
             "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__ABCD1234.mp4"]
    for n in names:
        (ff / n).parent.mkdir(parents=True, exist_ok=True)
        (ff / n).write_bytes(b"")
    o = manifests.load_manifest(ff, layout="ffpp").items.set_index("video_id")["original"]
    assert o[names[2]] == o[names[0]] == "ffpp:youtube/c23/000"  # same compression
    assert o[names[3]] == o[names[1]] == "ffpp:youtube/c40/000"
    assert o[names[5]] == o[names[4]] == "ffpp:actors/c23/01__walking"
