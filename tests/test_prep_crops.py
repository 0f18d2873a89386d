"""`dfd prep` on face-crop sets: labels and groups intact, bad images recorded, resumable."""

from __future__ import annotations

import pandas as pd
import pytest

from data_prep import prep
from dfd import readers, schema
from tests.conftest import jpeg_bytes, shared_path, write_crop_set


def _jpeg(value: int) -> bytes:
    return jpeg_bytes(value, 40)


@pytest.fixture
def crop_set(tmp_path):
    return write_crop_set(tmp_path / "crops", [
        (f"img{i}.jpg", _jpeg(30 * i) if i != 4 else b"not a jpeg at all",
         "FAKE" if i % 2 else "REAL", f"orig{i // 2}.mp4") for i in range(6)])


def test_crops_to_shards(crop_set, tmp_path):
    out = tmp_path / "shards"
    res = prep.run_prep(prep.PrepConfig(sources=[str(crop_set)], out_dir=str(out)))
    assert (res.written, res.failed) == (5, 1)
    fails = prep.read_failures(out)
    assert list(fails["video_id"]) == ["img4.jpg"] and "not a decodable image" in fails["reason"][0]
    index = schema.read_index(out)
    assert index["records"] == 5 and index["failures"] == 1
    els = {e["video_id"].decode(): e for e in
           readers.frame_dataset(out, face_size=40).as_numpy_iterator()}
    assert els["img3.jpg"]["label"] == 1 and els["img2.jpg"]["label"] == 0
    assert els["img3.jpg"]["group"] == b"orig1.mp4"
    # the source JPEG bytes are stored unchanged: decoding gives the JPEG's own pixels
    assert abs(int(els["img2.jpg"]["face"].mean()) - 60) <= 2
    assert (out / "prep_config.json").exists() and (out / "manifest.csv").exists()
    assert index["face_margin"] is None  # a crop set's framing is unknown unless given


def test_index_records_the_face_framing(crop_set, tmp_path):
    out = tmp_path / "shards"
    prep.run_prep(prep.PrepConfig(sources=[str(crop_set)], out_dir=str(out), crop_margin=1.05))
    assert schema.read_index(out)["face_margin"] == 1.05
    cfg = prep.PrepConfig(margin=1.3, crop_margin=1.05)
    assert prep.index_margin(cfg, {"video"}) == 1.3
    assert prep.index_margin(cfg, {"image"}) == 1.05
    assert prep.index_margin(cfg, {"image", "video"}) is None  # mixed framings
    assert prep.index_margin(prep.PrepConfig(margin=1.3, crop_margin=1.3), {"image", "video"}) == 1.3
    assert prep.index_margin(cfg, set()) is None
    with pytest.raises(ValueError, match=r"crop_margin must be within \[0.5, 3\], got 9"):
        prep.PrepConfig(crop_margin=9)


def test_rerun_skips_done_and_failed(crop_set, tmp_path):
    out = tmp_path / "shards"
    cfg = prep.PrepConfig(sources=[str(crop_set)], out_dir=str(out))
    prep.run_prep(cfg)
    again = prep.run_prep(cfg)
    assert (again.written, again.skipped) == (0, 6)
    assert schema.read_index(out)["records"] == 5
    retry = prep.run_prep(prep.PrepConfig(sources=[str(crop_set)], out_dir=str(out),
                                          retry_failures=True))
    assert (retry.written, retry.failed, retry.skipped) == (0, 1, 5)
    assert len(prep.read_failures(out)) == 1  # the failure is recorded once, not twice


def test_killed_run_resumes_without_loss(crop_set, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    cfg = prep.PrepConfig(sources=[str(crop_set)], out_dir=str(out), image_shard_records=2)
    calls = {"n": 0}
    real = prep._image_record

    def dying(item, data):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a kill in the middle of the third shard
        return real(item, data)

    monkeypatch.setattr(prep, "_image_record", dying)
    with pytest.raises(KeyboardInterrupt):
        prep.run_prep(cfg)
    monkeypatch.setattr(prep, "_image_record", real)
    assert not list(out.glob("*.tmp"))
    res = prep.run_prep(cfg)
    assert res.skipped == 2 and res.written == 3
    ids = [e["video_id"] for e in readers.frame_dataset(out, face_size=40).as_numpy_iterator()]
    assert sorted(ids) == [b"img0.jpg", b"img1.jpg", b"img2.jpg", b"img3.jpg", b"img5.jpg"]


@pytest.mark.shared
def test_dfdc_faces_all_crops(tmp_path):
    src = shared_path("data", "dfdc_faces")
    from data_prep import manifests, splits

    items = splits.split_by_group(manifests.load_manifest(src).items, seed=0)
    assert splits.check_leakage(items).ok
    out = tmp_path / "faces"
    res = prep.run_prep(prep.PrepConfig(out_dir=str(out), crop_landmarks="none"),
                        manifest=manifests.Manifest(items=items))
    assert (res.written, res.failed) == (12000, 0)
    index = schema.read_index(out)
    assert index["records"] == 12000 and index["labels"] == {"0": 6000, "1": 6000}
    written = pd.read_csv(out / "manifest.csv")
    assert written["group"].nunique() == 6000
