"""Manifests: every layout read from tiny synthetic trees, problems reported, CSV round trip."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pandas as pd
import pytest

from data_prep.manifests import (
    COLUMNS,
    detect_layout,
    load_manifest,
    merge_manifests,
    read_manifest,
    write_manifest,
)
from tests.conftest import shared_path


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_dfdc(folder, entries, files=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(entries))
    for name in files if files is not None else entries:
        touch(folder / name)
    return folder


def problems_of(m, item):
    return m.problems[m.problems["item"] == item]


def test_dfdc_single_folder_groups_and_problems(tmp_path):
    root = make_dfdc(tmp_path / "part", {
        "a.mp4": {"label": "FAKE", "original": "r.mp4", "split": "train"},
        "r.mp4": {"label": "REAL", "split": "train"},
        "orphan.mp4": {"label": "FAKE", "split": "train"},
        "gone.mp4": {"label": "REAL", "split": "train"},
        "odd.mp4": {"label": "MAYBE", "split": "train"},
    }, files=["a.mp4", "r.mp4", "orphan.mp4", "odd.mp4", "extra.mp4"])
    assert detect_layout(root) == "dfdc"
    m = load_manifest(root)
    items = m.items.set_index("video_id")
    assert list(m.items.columns) == COLUMNS + ["original"]
    assert set(items.index) == {"a.mp4", "r.mp4", "orphan.mp4"}
    assert items.loc["a.mp4", "group"] == "r.mp4" == items.loc["r.mp4", "group"]
    assert items.loc["orphan.mp4", "group"] == "orphan.mp4"
    assert items.loc["a.mp4", "label"] == 1 and items.loc["r.mp4", "label"] == 0
    assert set(items["split"]) == {"train"} and set(items["kind"]) == {"video"}
    assert problems_of(m, "orphan.mp4")["severity"].tolist() == ["warning"]
    assert "missing file" in problems_of(m, "gone.mp4")["problem"].iloc[0]
    assert "unknown label" in problems_of(m, "odd.mp4")["problem"].iloc[0]
    assert problems_of(m, "extra.mp4")["severity"].tolist() == ["warning"]


def test_dfdc_many_parts_and_metadata_file(tmp_path):
    make_dfdc(tmp_path / "dfdc_train_part_0", {"a.mp4": {"label": "REAL", "split": "train"}})
    make_dfdc(tmp_path / "dfdc_train_part_1",
              {"b.mp4": {"label": "FAKE", "original": "a.mp4", "split": "train"}})
    m = load_manifest(tmp_path)
    assert sorted(m.items["video_id"]) == ["a.mp4", "b.mp4"]
    assert set(m.items["group"]) == {"a.mp4"}
    one = load_manifest(tmp_path / "dfdc_train_part_1" / "metadata.json")
    assert one.items["video_id"].tolist() == ["b.mp4"]


def test_ffpp_union_find_joins_target_and_source(tmp_path):
    ff = tmp_path / "ffpp"
    for i in ("000", "001", "002", "003", "004", "005"):
        touch(ff / f"original_sequences/youtube/c23/videos/{i}.mp4")
    touch(ff / "original_sequences/youtube/c40/videos/000.mp4")
    touch(ff / "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4")
    touch(ff / "manipulated_sequences/Face2Face/c23/videos/002_003.mp4")
    touch(ff / "manipulated_sequences/FaceSwap/c23/videos/003_004.mp4")
    touch(ff / "manipulated_sequences/Deepfakes/c23/masks/videos/000_001.mp4")
    touch(ff / "manipulated_sequences/Deepfakes/c23/videos/weird.mp4")
    m = load_manifest(ff)
    g = m.items.set_index("video_id")["group"]
    yt = "original_sequences/youtube/c23/videos/"
    assert g[yt + "000.mp4"] == g[yt + "001.mp4"] == g["original_sequences/youtube/c40/videos/000.mp4"]
    assert g[yt + "002.mp4"] == g[yt + "003.mp4"] == g[yt + "004.mp4"]  # 002-003-004 chained
    assert g["manipulated_sequences/FaceSwap/c23/videos/003_004.mp4"] == g[yt + "002.mp4"]
    assert len({g[yt + "000.mp4"], g[yt + "002.mp4"], g[yt + "005.mp4"]}) == 3
    assert not any("masks" in v for v in m.items["video_id"])
    assert m.items.set_index("video_id")["label"][yt + "000.mp4"] == 0
    weird = "manipulated_sequences/Deepfakes/c23/videos/weird.mp4"
    assert problems_of(m, weird)["severity"].tolist() == ["warning"]
    assert m.items["video_id"].is_unique


def test_dfd_actors_grouped_by_actor_ids(tmp_path):
    ff = tmp_path / "ffpp"
    for name in ("01__walking.mp4", "02__talking.mp4", "03__hugging.mp4", "01__talking.mp4"):
        touch(ff / "original_sequences/actors/c23/videos" / name)
    touch(ff / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__ABCD1234.mp4")
    m = load_manifest(ff, layout="ffpp")
    g = {k.rsplit("/", 1)[1]: v for k, v in m.items.set_index("video_id")["group"].items()}
    assert g["01__walking.mp4"] == g["01__talking.mp4"] == g["02__talking.mp4"]
    assert g["01_02__walking__ABCD1234.mp4"] == g["01__walking.mp4"]
    assert g["03__hugging.mp4"] != g["01__walking.mp4"]


def test_csv_path_label_group_with_problems(tmp_path):
    touch(tmp_path / "clips/a.mp4")
    touch(tmp_path / "clips/b.mov")
    touch(tmp_path / "clips/c.avi")
    (tmp_path / "list.csv").write_text(
        "path,label,group\nclips/a.mp4,FAKE,g1\nclips/b.mov,REAL,g1\nclips/c.avi,perhaps,g2\n"
        "clips/missing.mp4,REAL,g3\nclips/a.mp4,FAKE,g1\nclips/notes.txt,REAL,g4\n")
    m = load_manifest(tmp_path / "list.csv")
    assert m.items["video_id"].tolist() == ["clips/a.mp4", "clips/b.mov"]
    assert m.items["group"].tolist() == ["g1", "g1"]
    assert m.items["path"].iloc[0] == str((tmp_path / "clips/a.mp4").resolve())
    found = dict(zip(m.problems["item"], m.problems["problem"]))
    assert "unknown label" in found["clips/c.avi"]
    assert "missing file" in found["clips/missing.mp4"]
    assert "duplicate video_id" in found["clips/a.mp4"]
    assert "unsupported type" in found["clips/notes.txt"]
    assert set(m.problems["severity"]) == {"error"}


def test_labels_csv_style_and_default_pair_groups(tmp_path):
    for n in ("x_real.mp4", "x_fake.mp4", "y.mp4", "z.mp4"):
        touch(tmp_path / n)
    (tmp_path / "labels.csv").write_text(
        "file,label,dataset,note\nx_real.mp4,REAL,d,\nx_fake.mp4,FAKE,d,\ny.mp4,UNKNOWN,d,\n"
        "z.mp4,df,d,\n")
    assert detect_layout(tmp_path) == "csv"
    m = load_manifest(tmp_path)
    items = m.items.set_index("video_id")
    assert items["label"].tolist() == [0, 1, -1, 1]
    assert items.loc["x_real.mp4", "group"] == items.loc["x_fake.mp4", "group"] == "x"
    assert m.problems.empty


def test_real_fake_folders_recursive(tmp_path):
    touch(tmp_path / "real/a/one.mp4")
    touch(tmp_path / "real/two.webm")
    touch(tmp_path / "fake/one.mkv")
    touch(tmp_path / "fake/readme.txt")
    assert detect_layout(tmp_path) == "real_fake"
    m = load_manifest(tmp_path)
    labels = m.items.set_index("video_id")["label"].to_dict()
    assert labels == {"real/a/one.mp4": 0, "real/two.webm": 0, "fake/one.mkv": 1}
    assert set(m.items["kind"]) == {"video"}


def make_faces(folder, n=6, drop=()):
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,label,original,archive"]
    with tarfile.open(folder / "faces-00.tar", "w") as tar:
        for i in range(n):
            name = f"f{i:03d}.jpg"
            label = "REAL" if i % 2 == 0 else "FAKE"
            rows.append(f"{name},{label},v{i // 2:03d}.mp4,faces-00.tar")
            if name in drop:
                continue
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"jpg"))
    rows.append("g000.jpg,REAL,v999.mp4,faces-09.tar")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_face_crop_tar_set(tmp_path):
    root = make_faces(tmp_path / "faces", drop=("f003.jpg",))
    m = load_manifest(root)
    assert len(m) == 5 and set(m.items["kind"]) == {"image"}
    assert set(m.items["path"]) == {str((root / "faces-00.tar").resolve())}
    assert m.items.set_index("video_id").loc["f002.jpg", "member"] == "f002.jpg"
    assert m.items.groupby("group").size().max() == 2
    found = dict(zip(m.problems["item"], m.problems["problem"]))
    assert "missing member f003.jpg" in found["f003.jpg"]
    assert "missing member" in found["g000.jpg"]


def test_image_folder_listed_by_csv(tmp_path):
    touch(tmp_path / "img/a.jpg")
    touch(tmp_path / "img/b.png")
    (tmp_path / "metadata.csv").write_text("file,label,original\nimg/a.jpg,REAL,p\nimg/b.png,FAKE,p\n")
    m = load_manifest(tmp_path)
    assert m.items["kind"].tolist() == ["image", "image"]
    assert m.items["member"].tolist() == ["", ""]
    assert set(m.items["group"]) == {"p"}


def test_merge_prefixes_clashing_ids_and_drops_duplicate_paths(tmp_path):
    a = make_dfdc(tmp_path / "a", {"v.mp4": {"label": "REAL"}})
    b = make_dfdc(tmp_path / "b", {"v.mp4": {"label": "FAKE", "original": "w.mp4"}})
    merged = merge_manifests([load_manifest(a), load_manifest(b), load_manifest(a)])
    assert merged.items["video_id"].tolist() == ["v.mp4", "dfdc:b/v.mp4"]
    assert merged.items["video_id"].is_unique
    assert merged.problems["problem"].str.contains("duplicate").sum() == 1
    assert merge_manifests([]).items.empty


def test_write_read_round_trip(tmp_path):
    root = make_faces(tmp_path / "faces")
    m = load_manifest(root)
    m.items["extra"] = "kept"
    out = write_manifest(m, tmp_path / "out/manifest.csv")
    back = read_manifest(out)
    pd.testing.assert_frame_equal(back.items, m.items, check_dtype=False)
    assert back.items["label"].dtype == "int64"
    assert detect_layout(out) == "manifest"
    again = load_manifest(out)  # checks files exist again
    assert len(again) == len(m)


def test_read_manifest_reports_bad_labels(tmp_path):
    p = tmp_path / "m.csv"
    row = "{id},/x/{id},,{label},g,s,,video"
    p.write_text(",".join(COLUMNS) + "\n" + row.format(id="a", label="1") + "\n"
                 + row.format(id="b", label="huh") + "\n")
    m = read_manifest(p)
    assert m.items["video_id"].tolist() == ["a"]
    assert "unknown label" in m.problems["problem"].iloc[0]
    with pytest.raises(ValueError, match="not a manifest"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_manifest(tmp_path / "bad.csv")


def test_unknown_layout_raises_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the layout"):
        load_manifest(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown layout"):
        load_manifest(tmp_path / "empty", layout="zip")
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(tmp_path / "nope")


# ---------------------------------------------------------------- research data (skips)


def test_shared_dfdc_videos():
    m = load_manifest(shared_path("data", "dfdc_videos"))
    assert len(m) == 8
    assert (m.items["label"] == 0).sum() == 3 and (m.items["label"] == 1).sum() == 5
    assert m.problems["severity"].tolist() == ["warning"]  # the FAKE without an original
    assert m.items.set_index("video_id").loc["abofeumbvv.mp4", "group"] == "abofeumbvv.mp4"


def test_shared_dfdc_faces_fast():
    root = shared_path("data", "dfdc_faces")
    t0 = time.perf_counter()
    m = load_manifest(root)
    elapsed = time.perf_counter() - t0
    assert len(m) == 12000 and m.problems.empty
    assert m.items["group"].nunique() == 6000
    assert (m.items["label"] == 1).sum() == 6000
    assert elapsed < 20, f"12,000 tar members took {elapsed:.1f} s"


def test_shared_other_videos():
    m = load_manifest(shared_path("data", "other_videos", "labels.csv"))
    assert len(m) == 9 and (m.items["label"] == -1).sum() == 2
