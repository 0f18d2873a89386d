"""Bad arguments and bad files given to ``dfd`` commands: one clear line naming the bad value
and a non-zero exit, before any long work, never a traceback, a silent default or lost output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket

import numpy as np
import pandas as pd
import pytest

from dfd_app.cli import main as cli


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def usage_error(capsys, argv) -> str:
    """argparse's own refusal of an option value: exit 2 and its message."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def video_table(path, seed=0, n=20):
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "label": label,
                  "p_fake": np.clip(0.3 + 0.4 * label + rng.uniform(-0.3, 0.3, n), 0, 1),
                  "status": "ok"}).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ options out of range

@pytest.mark.parametrize("argv, says", [
    (["--threshold", "2"], "argument --threshold: must be within [0, 1], got '2'"),
    (["--threshold", "nan"], "argument --threshold: must be within [0, 1], got 'nan'"),
    (["--bootstrap", "-5"], "argument --bootstrap: must be >= 0, got '-5'"),
    (["--log-loss-clip", "0.9"], "argument --log-loss-clip: must be within [0, 0.5), got '0.9'"),
])
def test_evaluate_refuses_out_of_range_numbers(tmp_path, capsys, argv, says):
    scores = video_table(tmp_path / "s.csv")
    assert says in usage_error(capsys, ["evaluate", "--scores", str(scores),
                                        "-o", str(tmp_path / "r"), *argv])
    assert not (tmp_path / "r").exists()


def test_detect_threshold_out_of_range_is_a_usage_error(capsys):
    assert "got '1.5'" in usage_error(capsys, ["detect", "x.mp4", "--threshold", "1.5"])


@pytest.mark.parametrize("flag", ["--min-precision", "--precision-confidence", "--threshold"])
def test_calibrate_probabilities_out_of_range_are_usage_errors(tmp_path, capsys, flag):
    scores = video_table(tmp_path / "s.csv")
    says = usage_error(capsys, ["calibrate", "--model", "m.keras", "--scores", str(scores),
                                "-o", str(tmp_path / "c"), flag, "1.5"])
    assert f"argument {flag}: must be within [0, 1], got '1.5'" in says


def test_calibrate_min_precision_below_a_coin_is_a_usage_error(tmp_path, capsys):
    scores = video_table(tmp_path / "s.csv")
    says = usage_error(capsys, ["calibrate", "--model", "m.keras", "--scores", str(scores),
                                "-o", str(tmp_path / "c"), "--min-precision", "0.3"])
    assert "argument --min-precision: must be within [0.5, 1], got '0.3'" in says


def test_platt_scaling_of_extreme_scores_warns_of_nothing():
    from dfd.evaluation.calibration import PlattScaling

    with np.errstate(all="raise"):  # an overflow in exp would raise here
        p = PlattScaling(a=40.0, b=-3.0).apply([0.0, 1e-300, 0.5, 1.0])
    assert p[0] == pytest.approx(0.0, abs=1e-12) and p[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("flag, value", [("--frames", "0"), ("--shard-records", "0"),
                                         ("--workers", "-1"), ("--detect-side", "-5"),
                                         ("--limit", "0"), ("--sampler", "bogus")])
def test_prep_bad_option_writes_nothing(tmp_path, caplog, flag, value):
    (tmp_path / "src" / "real").mkdir(parents=True)
    out = tmp_path / "shards"
    with caplog.at_level(logging.ERROR):
        code = cli.main(["prep", str(tmp_path / "src"), "-o", str(out), flag, value])
    assert code == 2 and not out.exists()  # no half-made folder that says "run it again"
    (line,) = error_lines(caplog)
    assert flag in line and value in line


def test_prep_out_that_is_a_file_names_it(tmp_path, caplog):
    (tmp_path / "src").mkdir()
    (tmp_path / "f.txt").write_text("x")
    with caplog.at_level(logging.ERROR):
        assert cli.main(["prep", str(tmp_path / "src"), "-o", str(tmp_path / "f.txt")]) == 2
    assert error_lines(caplog) == [f"--out {tmp_path / 'f.txt'}: {tmp_path / 'f.txt'} is a "
                                   "file, not a folder"]


# ------------------------------------------------------------------ outputs checked first

def test_predict_checks_its_output_names_before_loading_the_model(tmp_path, caplog):
    for argv, flag in ((["--out", str(tmp_path / "v.xlsx")], "--out"),
                       (["--out", str(tmp_path / "v.csv"), "--frames-out", str(tmp_path)],
                        "--frames-out")):
        caplog.clear()
        with caplog.at_level(logging.ERROR):  # the model "x" would fail otherwise
            code = cli.main(["predict", "--model", "x", "--shards", str(tmp_path), *argv])
        assert code == 2
        (line,) = error_lines(caplog)
        assert line.startswith(flag + " ")
    assert not (tmp_path / "v.csv").exists()


def test_stack_fit_checks_oof_out_before_writing_the_stacker(tmp_path, caplog):
    a, b = video_table(tmp_path / "a.csv", 0), video_table(tmp_path / "b.csv", 1)
    out = tmp_path / "stacker.json"
    with caplog.at_level(logging.ERROR):
        code = cli.main(["stack", "fit", "--scores", f"a={a}", "--scores", f"b={b}",
                         "-o", str(out), "--oof", "2", "--oof-out", str(tmp_path / "x.txt")])
    assert code == 2 and not out.exists()  # not half the results
    assert error_lines(caplog) == [f"--oof-out {tmp_path / 'x.txt'} must end in .csv or .parquet"]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli.main(["stack", "fit", "--scores", f"a={a}", "-o", str(out), "--oof", "1"]) == 2
    assert error_lines(caplog) == ["--oof must be 0 (no out-of-fold report) or >= 2 folds, got 1"]


def test_detect_artifact_folder_that_is_a_file_fails_before_the_model(tmp_path, caplog,
                                                                      monkeypatch):
    from dfd_app.detect import pipeline

    def never(**kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline, "build_context", never)
    taken = tmp_path / "plots"
    taken.write_text("a file")
    for flag in ("--plot", "--faces", "--explain"):
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert cli.main(["detect", "x.mp4", flag, str(taken)]) == 2
        assert error_lines(caplog) == [f"{flag} {taken}: {taken} is a file, not a folder"]


def test_detect_with_nothing_to_score_is_an_error_before_the_model(tmp_path, caplog,
                                                                   monkeypatch):
    from dfd_app.detect import pipeline

    monkeypatch.setattr(pipeline, "build_context", lambda **kw: pytest.fail("model loaded"))
    empty = tmp_path / "videos"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a video")
    listed = tmp_path / "list.txt"
    listed.write_text("# nothing yet\n")
    for argv in ([str(empty)], ["--list", str(listed)], ["--crops", str(empty)]):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert cli.main(["detect", *argv]) == 2  # not an empty table and exit 0
        (line,) = error_lines(caplog)
        assert line.startswith("nothing to score: no ") and argv[-1] in line
        # one line says it: no warning about the empty folder before the error
        assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [
            logging.ERROR]


def test_detect_names_an_empty_folder_once_and_scores_the_rest(tmp_path, caplog, monkeypatch):
    from dfd_app.detect import pipeline

    class Loaded(Exception):
        pass

    def build_context(**kw):
        raise Loaded

    monkeypatch.setattr(pipeline, "build_context", build_context)
    empty = tmp_path / "videos"
    empty.mkdir()
    with caplog.at_level(logging.WARNING), pytest.raises(Loaded):
        cli.main(["detect", str(empty), str(tmp_path / "missing.mp4")])
    (rec,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert rec.levelno == logging.WARNING
    assert str(empty) in rec.getMessage() and "the 1 item(s) of the other inputs" in rec.getMessage()


def test_audit_out_that_is_a_folder_fails_before_measuring(tmp_path, caplog, monkeypatch):
    from data_prep import audit

    monkeypatch.setattr(audit, "audit_items", lambda *a, **k: pytest.fail("measured"))
    with caplog.at_level(logging.ERROR):
        assert cli.main(["audit", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert error_lines(caplog) == [f"--out {tmp_path} is a folder: give a file name"]


# ------------------------------------------------------------------ damaged files

def test_a_keras_file_that_is_not_a_zip_is_named_as_damaged(tmp_path):
    from dfd.inference.loading import load_keras

    bad = tmp_path / "cut.keras"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a zip's first bytes, cut short
    with pytest.raises(ValueError, match=r"cut\.keras is not a readable \.keras model: not a "
                                         r"zip archive") as exc:
        load_keras(bad)
    assert "not found" not in str(exc.value)


@pytest.fixture
def stacker_file(tmp_path):
    from dfd.evaluation import stacking
    from dfd.evaluation.stacker import build_features, video_labels

    tables = {n: pd.read_csv(video_table(tmp_path / f"{n}.csv", s), dtype={"video_id": str})
              for n, s in (("a", 0), ("b", 1))}
    st = stacking.fit(build_features(tables), video_labels(tables))
    return st.save(tmp_path / "stacker.json")


@pytest.mark.parametrize("change, says", [
    ({"bogus": 1}, "unknown field(s) ['bogus']"),
    ({"coef": "abc"}, "coef must be a list of numbers, got 'abc'"),
    ({"feature_names": "a"}, "feature_names must be a list of strings, got 'a'"),
    ({"fit_report": "{}"}, "fit_report must be an object, got '{}'"),
    ({"coef": [1.0]}, "coef has 1 value(s) for 2 feature(s) ['a', 'b']"),
    ({"scaler_scale": [1.0, 0.0]}, "scaler_scale must be > 0"),
    ({"intercept": None}, "intercept must be a number, got None"),
    ({"coef": [1.0, "x"]}, "coef[1] must be a number, got 'x'"),
    ({"coef": [1.0, float("nan")]}, "coef must be finite numbers, got [1.0, nan]"),
    ({"feature_names": ["a", 2]}, "feature_names[1] must be a string, got 2"),
    ({"n_train": True}, "n_train must be a whole number, got True"),
    ({"n_train_fake": -1}, "n_train_fake must be >= 0, got -1"),
    ({"coef": [1.0, 10 ** 400]}, "coef must be finite numbers"),
])
def test_a_bad_stacker_file_is_one_line_naming_it(stacker_file, tmp_path, caplog, change, says):
    d = json.loads(stacker_file.read_text())
    d.update(change)
    stacker_file.write_text(json.dumps(d))
    with caplog.at_level(logging.ERROR):
        code = cli.main(["stack", "predict", "--stacker", str(stacker_file), "--scores",
                         f"a={tmp_path / 'a.csv'}", "--scores", f"b={tmp_path / 'b.csv'}",
                         "-o", str(tmp_path / "out.csv")])
    assert code == 2  # not a traceback (exit 1)
    (line,) = error_lines(caplog)
    assert line.startswith(f"stacker file {stacker_file}") and says in line


def test_a_stacker_that_is_not_json_is_named(tmp_path):
    from dfd.evaluation.stacker import Stacker

    (tmp_path / "s.json").write_text("{bad")
    with pytest.raises(ValueError, match=r"stacker file .*s\.json is not valid JSON"):
        Stacker.load(tmp_path / "s.json")


# ------------------------------------------------------------------ JSON options of dfd train

@pytest.mark.parametrize("argv, says", [
    (["--phases", '{"epochs": 3}'], "--phases must be a JSON list [...], got '{\"epochs\": 3}'"),
    (["--augment", "[1, 2]"], "--augment must be a JSON object {...}, got '[1, 2]'"),
    (["--augment", '{"jpeg": "no"}'], "augment.jpeg must be true or false, got 'no'"),
    (["--phases", '[{"epochs": "3", "learning_rate": 0.001}]'],
     "phases[0].epochs must be a whole number, got '3'"),
    (["--model-kwargs", "[1]"], "--model-kwargs must be a JSON object {...}, got '[1]'"),
])
def test_train_json_options_of_the_wrong_type(tmp_path, caplog, argv, says):
    with caplog.at_level(logging.ERROR):
        code = cli.main(["train", "--train", str(tmp_path), "--dry-run", *argv])
    assert code == 2
    assert error_lines(caplog) == [says]


def test_a_config_file_of_the_wrong_type_names_the_field(tmp_path, caplog):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train": [str(tmp_path)], "augment": {"jpeg_quality": [40]}}))
    with caplog.at_level(logging.ERROR):
        assert cli.main(["train", "--config", str(cfg), "--dry-run"]) == 2
    assert error_lines(caplog) == ["augment.jpeg_quality must be a list of 2 (a whole number, a "
                                   "whole number), got [40]"]


def test_a_config_with_null_lists_is_read_as_empty():
    from dfd.config import config_from_dict
    from dfd.training.config import TrainConfig

    cfg = config_from_dict(TrainConfig, {"train": ["x"], "val": None, "mix": None})
    assert cfg.val == [] and cfg.mix == {}


def test_strict_types_refuse_the_command_lines_shorthands():
    from dfd.config import check_types
    from dfd.training.config import TrainConfig

    loose = {"train": "shards", "val": None, "mix": "dfdc=1"}
    check_types(TrainConfig, loose)  # the command line's forms pass
    for key, says in (("train", "train must be a list of strings, got 'shards'"),
                      ("val", "val must be a list of strings, got None"),
                      ("mix", "mix must be an object, got 'dfdc=1'")):
        with pytest.raises(ValueError) as err:
            check_types(TrainConfig, {key: loose[key]}, strict=True)
        assert str(err.value) == says
    check_types(TrainConfig, {"train": ["a"], "val": [], "mix": {"dfdc": 1.0}}, strict=True)


@dataclasses.dataclass
class _Part:
    a: int = 0


@dataclasses.dataclass
class _Parts:
    xs: list[int] | None = None
    parts: list[_Part] = dataclasses.field(default_factory=list)
    maybe: list[int | None] = dataclasses.field(default_factory=list)
    one: _Part | None = None


@pytest.mark.parametrize("data, says", [
    ({"xs": [1, "x"]}, "xs[1] must be a whole number, got 'x'"),  # inside an optional list
    ({"xs": "x"}, "xs must be a list of whole numbers or null, got 'x'"),
    ({"parts": "p"}, "parts must be a list of objects of _Part fields, got 'p'"),
    ({"maybe": "q"}, "maybe must be a list of whole numbers or nulls, got 'q'"),
    ({"one": {"a": "z"}}, "one.a must be a whole number, got 'z'"),  # an optional section
])
def test_type_errors_name_what_the_field_holds(data, says):
    from dfd.config import check_types

    with pytest.raises(ValueError) as err:
        check_types(_Parts, data, strict=True)
    assert str(err.value) == says


# ------------------------------------------------------------------ dfd serve

@pytest.fixture
def no_model(monkeypatch):
    """dfd serve must refuse before it loads a model (and so before it could serve)."""
    pytest.importorskip("uvicorn")
    from dfd_app.cli import serve

    monkeypatch.setattr(serve.ServiceSettings, "build_context",
                        lambda self: pytest.fail("the model was loaded"))


def test_serve_port_out_of_range_is_a_usage_error(capsys, no_model):
    assert "argument --port: must be a port number 0-65535, got '70000'" in usage_error(
        capsys, ["serve", "--port", "70000"])


def test_serve_address_in_use_is_one_error_before_the_model(caplog, no_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            assert cli.main(["serve", "--port", str(port)]) == 2
    (line,) = error_lines(caplog)
    assert line.startswith(f"cannot serve on 127.0.0.1:{port}: ") and "in use" in line


@pytest.mark.parametrize("flag, value, says", [("--workers", "0", "--workers must be >= 1, got 0"),
                                               ("--timeout", "-1", "--timeout must be > 0, got -1.0"),
                                               ("--max-decoded-mpix", "-5",
                                                "--max-decoded-mpix must be >= 0 (0: no cap), got -5.0")])
def test_serve_limits_name_the_bad_value(caplog, no_model, flag, value, says):
    with caplog.at_level(logging.ERROR):
        assert cli.main(["serve", flag, value]) == 2
    assert error_lines(caplog) == [says]


# ------------------------------------------------------------------ dfd predict --split

def test_predict_a_split_the_shards_do_not_hold_is_an_error(tmp_path, caplog):
    pytest.importorskip("tensorflow")
    from dfd import schema
    from mesonet_tf.models import Meso4
    from tests.conftest import write_shards

    rng = np.random.default_rng(0)
    faces = [schema.encode_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))]
    shards = write_shards(tmp_path / "shards", [
        schema.FaceRecord(video_id="a", label=1, faces=faces, frame_indices=[0], split="test"),
        schema.FaceRecord(video_id="b", label=0, faces=faces, frame_indices=[0], split="val")])
    model = tmp_path / "tiny.keras"
    Meso4(input_shape=(32, 32, 3), name="tiny").save(model)
    out = tmp_path / "v.csv"
    with caplog.at_level(logging.ERROR):
        code = cli.main(["predict", "--model", str(model), "--shards", str(shards), "-o", str(out),
                         "--split", "tset"])
    assert code == 2 and not out.exists()  # not an empty table and exit 0
    assert error_lines(caplog) == [f"no record of split 'tset' in {shards}; the shards hold "
                                   "test, val"]
    assert cli.main(["predict", "--model", str(model), "--shards", str(shards), "-o", str(out),
                     "--split", "test"]) == 0
    assert pd.read_csv(out)["video_id"].tolist() == ["a"]
