"""Saved artefacts read back as they were written: the prep config, a model preset, score
tables (CSV and Parquet) and a run's history. Fast: no TensorFlow, no model."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from data_prep.prep import CONFIG_FILE, PrepConfig
from dfd import presets, schema
from dfd.config import load_config, save_config
from dfd.labels import FAKE, REAL, UNKNOWN
from dfd.scores import (
    FRAME_COLUMNS,
    STATUS_NO_FACE,
    failure_row,
    read_table,
    video_scores,
    write_table,
)
from dfd.training import history


def test_prep_config_round_trips(tmp_path):
    cfg = PrepConfig(sources=["a/videos", "b/crops.csv"], out_dir=str(tmp_path / "shards"),
                     workers=3, n_frames=12, sampler="uniform", face_size=224, margin=1.06,
                     crop_margin=1.1, shard_records=8, retry_failures=True, limit=5,
                     crop_landmarks="all")
    path = save_config(cfg, tmp_path / CONFIG_FILE)
    back = load_config(PrepConfig, path)
    assert back == cfg
    assert json.loads(path.read_text())["config_class"] == "PrepConfig"


def test_a_preset_with_every_field_round_trips(tmp_path):
    preset = presets.ModelPreset(
        name="clipper", architecture="temporal", file="model.keras", sha256="ab" * 32,
        url="https://example.org/m.keras", path=str(tmp_path / "m.keras"), kind="model",
        outputs="p_fake", input_kind="clips", face_size=224, clip_len=8, face_margin=1.06,
        face_centre=-0.033, resize_method="bilinear",
        calibration={"a": 1.5, "b": -0.25, "n": 40, "n_fake": 20},
        uncertain={"low": 0.3, "high": 0.7, "threshold": 0.5, "min_precision": 0.8},
        description="a test preset", extra={"inputs": {"faces": {"shape": [None, 8, None, None, 3],
                                                                 "dtype": "uint8"}}, "note": "x"})
    written = presets.write_preset(preset, tmp_path / "run")
    assert written.name == presets.PRESET_FILE
    assert presets.read_preset(tmp_path / "run") == preset
    assert presets.read_preset(written) == preset  # the file itself (beside a model file)


def _video_table():
    frames = pd.DataFrame({
        "video_id": ["007", "007", "x1", "x1"], "track": [0, 1, 0, 0],
        "frame_index": [0, 3, 0, 5], "p_fake": [0.25, 0.75, 0.125, 0.5], "model": "m"})
    videos = video_scores(frames, labels={"007": FAKE, "x1": REAL}, model="m")
    lost = pd.DataFrame([failure_row("000", STATUS_NO_FACE, "no face found", label=UNKNOWN,
                                     model="m", aggregation="mean")])
    return frames[FRAME_COLUMNS], pd.concat([videos, lost], ignore_index=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_tables_round_trip(tmp_path, suffix):
    """Ids that look like numbers stay strings, a missing score stays NaN (never 0.5) and an
    empty error stays empty."""
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    frames, videos = _video_table()
    for table, name in ((frames, "frames"), (videos, "videos")):
        back = read_table(write_table(table, tmp_path / f"{name}{suffix}"))
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
    back = read_table(tmp_path / f"videos{suffix}").set_index("video_id")
    assert back.loc["007", "label"] == FAKE and back.loc["000", "label"] == UNKNOWN
    assert math.isnan(back.loc["000", "p_fake"]) and back.loc["x1", "error"] == ""


def test_history_round_trips_and_a_repeated_epoch_keeps_its_last_row(tmp_path):
    csv = tmp_path / history.HISTORY_CSV
    history.append_row(csv, 0, {"loss": 0.75, "val_auc": 0.5})
    history.append_row(csv, 1, {"loss": 0.5, "val_auc": 0.625})
    history.append_row(csv, 1, {"loss": 0.375, "val_auc": float("nan")})  # resumed epoch 1
    rows = history.read_history(csv)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0] == {"epoch": 0, "loss": 0.75, "val_auc": 0.5}
    assert rows[1]["loss"] == 0.375 and math.isnan(rows[1]["val_auc"])
    hist = history.write_history_json(tmp_path)
    assert json.loads((tmp_path / history.HISTORY_JSON).read_text()) == {
        "epoch": [0, 1], "loss": [0.75, 0.375], "val_auc": [0.5, None]}  # NaN written as null
    assert hist["epoch"] == [0, 1]


def test_the_shards_face_size_is_the_default_everywhere_faces_are_cut():
    """One face side for the shards (dfd.schema.FACE_SIZE): extraction and prep default to it."""
    from data_prep.extract import ExtractConfig

    assert ExtractConfig().face_size == PrepConfig().face_size == schema.FACE_SIZE
