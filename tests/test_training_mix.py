"""Training input over several sources: exact per-batch source shares, (fake, real) pairs."""

from __future__ import annotations

import numpy as np
import pytest

from dfd import schema
from dfd.training import sampling
from dfd.training.config import TrainConfig, parse_mix
from dfd.training.data import make_dataset

SIZE = 8
SOURCES = {"csv:big_faces": 0, "csv:small_faces": 1}


def _png(src: int, label: int, orig: int) -> bytes:
    """A flat face whose pixels say where it came from: R source, G original, B label."""
    face = np.zeros((SIZE, SIZE, 3), np.uint8)
    face[..., 0], face[..., 1], face[..., 2] = 10 + 100 * src, orig, 10 + 100 * label
    return schema.encode_png(face)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A big source (100 originals, 1 face per record) and a small one (6 originals, 3 faces
    per record); each original has a REAL and a FAKE record (the small source's fakes are
    2 per original); plus records of another split and one record without an original."""
    from data_prep.shard_writer import ShardWriter

    out = tmp_path_factory.mktemp("mix_shards")
    recs = []
    for src, n_orig, n_faces, n_fakes in (("csv:big_faces", 100, 1, 1),
                                          ("csv:small_faces", 6, 3, 2)):
        s = SOURCES[src]
        for o in range(n_orig):
            orig = 100 * s + o
            for lab, copies in ((0, 1), (1, n_fakes)):
                for c in range(copies):
                    recs.append(schema.FaceRecord(
                        video_id=f"{src}/{o}/{lab}/{c}", label=lab, group=f"g{orig}",
                        source=src, split="train", original=f"o{orig}",
                        faces=[_png(s, lab, orig)] * n_faces, frame_indices=list(range(n_faces))))
    recs.append(schema.FaceRecord(video_id="val0", label=1, source="csv:big_faces", split="val",
                                  original="o0", faces=[_png(0, 1, 250)], frame_indices=[0]))
    recs.append(schema.FaceRecord(video_id="lone", label=1, source="csv:big_faces",
                                  split="train", faces=[_png(0, 1, 251)], frame_indices=[0]))
    rng = np.random.default_rng(0)
    with ShardWriter(out, "train", max_records=25) as w:
        for i in rng.permutation(len(recs)):
            w.add(recs[i])
    from data_prep.shard_writer import build_index

    build_index(out)
    return out


def _cfg(shards, **kw):
    base = dict(train=[str(shards)], train_split="train", face_size=SIZE, batch_size=8,
                shuffle_buffer=64, seed=1)
    base.update(kw)
    cfg = TrainConfig(**base)
    cfg.augment.enabled = False
    return cfg


def _batches(cfg, n=6):
    out = []
    for x, y, w in make_dataset(cfg, True).take(n).as_numpy_iterator():
        pix = x.reshape(len(x), -1, 3)[:, 0, :].astype(int)
        out.append(((pix[:, 0] - 10) // 100, pix[:, 1], (pix[:, 2] - 10) // 100, y, w))
    return out


def test_parse_mix():
    assert parse_mix("dfdc=0.5, ffpp=1") == {"dfdc": 0.5, "ffpp": 1.0}
    assert parse_mix(None) == {} and parse_mix({"a": 2}) == {"a": 2.0}
    for bad in ("dfdc", "dfdc=x", "dfdc=0", "a=1,a=2", "=1"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    with pytest.raises(ValueError, match="even"):
        TrainConfig(train=["x"], paired=True, batch_size=7)


def test_resolve_mix_and_batch_slots():
    avail = ["csv:dfdc_faces", "csv:ffpp_faces"]
    assert sampling.resolve_mix({"dfdc": 1, "ffpp_faces": 3}, avail) == \
        {"csv:dfdc_faces": 0.25, "csv:ffpp_faces": 0.75}
    with pytest.raises(ValueError, match="celeb"):
        sampling.resolve_mix({"celeb": 1}, avail)
    with pytest.raises(ValueError, match="several"):
        sampling.resolve_mix({"csv": 1}, avail)
    assert sampling.batch_slots([0.5, 0.25, 0.25], 4) == [0, 0, 1, 2]
    assert sorted(np.bincount(sampling.batch_slots([0.7, 0.3], 10))) == [3, 7]


def test_mix_gives_every_batch_the_set_shares(shards):
    cfg = _cfg(shards, mix={"big": 0.5, "small_faces": 0.5})
    for src, _orig, lab, y, w in _batches(cfg):
        assert (y == lab).all() and (w == 1).all()  # FAKE = 1
        for s in (0, 1):  # 4 of each source, 2 REAL + 2 FAKE within each
            assert (src == s).sum() == 4
            assert (lab[src == s] == 1).sum() == 2
    # without mix the big source (200 faces against 54) swamps the small one, unevenly
    plain = [(b[0] == 1).sum() for b in _batches(_cfg(shards, class_balance="none"), n=10)]
    assert np.mean(plain) < 0.35 * 8 and len(set(plain)) > 1


def test_mix_shares_follow_the_setting(shards):
    cfg = _cfg(shards, mix="big=3,small=1", batch_size=16, class_balance="none")
    for src, *_ in _batches(cfg, n=4):
        assert (src == 0).sum() == 12 and (src == 1).sum() == 4


def test_mix_names_a_missing_source(shards):
    with pytest.raises(ValueError, match="celeb"):
        make_dataset(_cfg(shards, mix={"celeb": 1}), True)


def test_paired_batches_hold_each_fake_with_its_original(shards):
    cfg = _cfg(shards, paired=True, batch_size=8)
    seen = set()
    for src, orig, lab, y, _ in _batches(cfg, n=12):
        assert (y == lab).all() and (y == 1).sum() == 4
        assert 250 not in orig and 251 not in orig  # other split, no original: left out
        for i in np.flatnonzero(y == 1):  # the fake's real original sits next to it
            assert y[i + 1] == 0 and orig[i + 1] == orig[i] and src[i + 1] == src[i]
        seen |= set(orig.tolist())
    assert len(seen) > 20  # pairs from many originals, not one


def test_paired_and_mixed(shards):
    cfg = _cfg(shards, paired=True, mix={"big": 0.5, "small": 0.5}, batch_size=8)
    for src, orig, lab, y, _ in _batches(cfg):
        assert (y == lab).all() and (src == 1).sum() == 4 and (y == 1).sum() == 4
        for i in np.flatnonzero(y == 1):
            assert y[i + 1] == 0 and orig[i + 1] == orig[i]


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_paired_with_self_blended_fakes(shards, ratio):
    """--paired --fakes both: faces travel with their landmarks into the SBI stage; at ratio
    1 every FAKE is a blend of a REAL face (its corner keeps the REAL's colour), at 0 none."""
    cfg = _cfg(shards, paired=True, mix={"big": 0.5, "small": 0.5}, batch_size=8,
               fakes="both", sbi_ratio=ratio)
    for _src, _orig, lab, y, _ in _batches(cfg, n=3):
        assert list(y) == [1, 0] * 4  # labels and pairing order unchanged
        assert (lab[y == 0] == 0).all()
        assert (lab[y == 1] == (0 if ratio else 1)).all()


def test_training_record_says_which_sources_and_fakes(shards):
    from dfd.training.sampling import training_record

    rec = training_record(_cfg(shards))
    assert rec["train_sources"] == ["csv:big_faces", "csv:small_faces"]
    assert rec["fake_sources"] == rec["train_sources"] and rec["fakes"] == "real"
    rec = training_record(_cfg(shards, mix={"small": 1}))
    assert rec["train_sources"] == ["csv:small_faces"] == rec["fake_sources"]
    rec = training_record(_cfg(shards, fakes="sbi"))
    assert rec["fake_sources"] == [] and len(rec["train_sources"]) == 2
    assert training_record(_cfg(shards, fakes="both", sbi_ratio=0.25))["sbi_ratio"] == 0.25


def test_paired_clips(shards):
    cfg = _cfg(shards, paired=True, input_kind="clips", clip_len=2, batch_size=4)
    x, y, _ = next(make_dataset(cfg, True).as_numpy_iterator())
    faces, mask = x["faces"], x["mask"]
    assert faces.shape == (4, 2, SIZE, SIZE, 3) and list(y) == [1, 0, 1, 0]
    g = faces[..., 0, 0, 1]  # G = original, per clip frame (masked frames are 0)
    for i in (0, 2):
        assert g[i][mask[i]].max() == g[i + 1][mask[i + 1]].max()


def test_train_cli_flags_reach_the_saved_config(tmp_path):
    import argparse

    from dfd.config import config_to_dict, load_config, save_config
    from dfd_app.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--train", "x", "--mix", "dfdc=0.5,ffpp=0.5", "--paired"])
    cfg = train_cli.config_from_args(args)
    assert cfg.mix == {"dfdc": 0.5, "ffpp": 0.5} and cfg.paired
    save_config(cfg, tmp_path / "config.json")
    back = load_config(TrainConfig, tmp_path / "config.json")
    assert config_to_dict(back)["mix"] == {"dfdc": 0.5, "ffpp": 0.5} and back.paired
