"""Held-out videos under upload conditions (dfd.evaluation.robustness)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from dfd import schema  # noqa: E402
from dfd.evaluation.robustness import (  # noqa: E402
    UPLOAD_CONDITIONS,
    degrade,
    load_videos,
    parse_condition,
    score_videos,
)
from dfd.inference.frames import predict  # noqa: E402
from mesonet_tf.models import Meso4  # noqa: E402
from tests.conftest import write_shards  # noqa: E402

SIZE = 32


def _faces(n, seed):
    """Smooth random faces (a codec keeps them close; noise it would not)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    import cv2

    return np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
                     for f in small]).clip(0, 255).astype(np.uint8)


def _rec(vid, n, label, seed, track=0, source=""):
    return schema.FaceRecord(video_id=vid, label=label, track=track, source=source,
                             faces=[schema.encode_png(f) for f in _faces(n, seed)],
                             frame_indices=list(range(0, 5 * n, 5)))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), [
        _rec("a", 3, 1, 0, source="csv:ffpp_faces"), _rec("b", 2, 0, 1),
        _rec("b", 2, 0, 2, track=1), _rec("c", 4, 1, 4), _rec("u", 1, -1, 3)])


@pytest.fixture(scope="module")
def model():
    return Meso4(input_shape=(SIZE, SIZE, 3), name="tiny")


def test_conditions_parse_and_bad_ones_are_named():
    assert parse_condition("stored") == ("stored", None)
    assert parse_condition("h264:35") == ("h264", 35)
    assert parse_condition("blur:1.5") == ("blur", 1.5)
    assert all(parse_condition(c) for c in UPLOAD_CONDITIONS)
    for bad, match in (("webp:3", "'webp:3'.*kind"), ("h264", "CRF"), ("h264:x", "'x'"),
                       ("h264:60", r"\[0, 51\], got 60"), ("jpeg:2.5", "quality"),
                       ("stored:1", "takes no value"), ("shrink:1", "factor")):
        with pytest.raises(ValueError, match=match):
            parse_condition(bad)


def test_each_condition_changes_the_faces_it_should_and_keeps_their_shape():
    x = _faces(5, 7)
    assert degrade(x, "stored") is x
    for c in ("h264:40", "jpeg:20", "shrink:4", "blur:2"):
        y = degrade(x, c)
        assert y.shape == x.shape and y.dtype == np.uint8, c
        diff = np.abs(y.astype(int) - x).mean()
        assert 0 < diff < 40, (c, diff)  # changed, still the same picture
    mild, hard = (np.abs(degrade(x, f"h264:{q}").astype(int) - x).mean() for q in (10, 45))
    assert mild < hard  # a higher CRF loses more
    np.testing.assert_array_equal(degrade(x, "h264:30"), degrade(x, "h264:30"))  # fixed
    with pytest.raises(ValueError, match="uint8"):
        degrade(x.astype(np.float32), "jpeg:50")


def test_stored_scores_equal_dfd_predicts_and_degraded_ones_differ(model, shards):
    held = load_videos(shards)
    assert held.video_ids == ["a", "b", "c"] and list(held.labels) == [1, 0, 1]  # no "u"
    assert [len(f) for f in held.faces] == [3, 4, 4] and sorted(held.tracks[1]) == [0, 0, 1, 1]
    assert held.sources[0] == "csv:ffpp_faces" and held.faces[0].shape[1:] == (SIZE, SIZE, 3)
    table = score_videos(model, held, model_name="m").set_index("video_id")
    _, videos = predict(model, shards, model_name="m")
    ref = videos.set_index("video_id")
    for vid in held.video_ids:  # the same faces, the same rule (the worst track's mean)
        assert table.loc[vid, "p_fake"] == pytest.approx(ref.loc[vid, "p_fake"], abs=1e-6)
    assert set(table["condition"]) == {"stored"} and table.loc["b", "n_faces"] == 4
    worse = held.degraded("shrink:8")
    assert worse.condition == "shrink:8" and held.condition == "stored"
    moved = score_videos(model, worse)["p_fake"].to_numpy()
    assert not np.allclose(moved, table["p_fake"].to_numpy(), atol=1e-7)
    with pytest.raises(ValueError, match="already under 'shrink:8'"):
        worse.degraded("jpeg:50")


def test_one_split_or_one_source(shards):
    ff = load_videos(shards, only_source="ffpp_faces")
    assert ff.video_ids == ["a"]
    assert len(load_videos(shards, split="test")) == 0  # the records carry no split
    held = load_videos(shards)
    picked = held.select(only_source="ffpp")
    assert picked.video_ids == ["a"] and list(picked.labels) == [1]
    assert picked.faces[0] is held.faces[0] and picked.splits == [""]
    assert len(held.select(split="")) == 3 and len(held.select(split="val")) == 0
    with pytest.raises(ValueError, match="'celebdf'.*csv:ffpp_faces"):
        held.select(only_source="celebdf")
