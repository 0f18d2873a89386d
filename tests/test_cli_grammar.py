"""One CLI grammar: every option has help, shared flags exist where they apply, a flag name
means one thing on every command, renamed flags keep their old spelling (deprecated) for one
release, and ``-q`` quiets TensorFlow too."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfd_app.cli import common
from dfd_app.cli import main as cli
from dfd_app.cli.common import DEPRECATED_DEST, DeprecatedAlias

ROOT = Path(__file__).resolve().parents[1]

#: what each option means, on every command that has it (one meaning per name)
MEANINGS = {
    "-o/--out": "where the command writes its result (file or folder)",
    "--no-progress": "no progress bars",
    "--weights-dir": "folder of registered weights files",
    "--runtime": "what runs a frame model: auto (TensorFlow Lite where it converts), keras, tflite",
    "--model": "the model to use: a file, a SavedModel, a registered name (train: a builder)",
    "--scores": "score table(s): one table, or NAME=PATH per model",
    "--frames": "frames sampled per video",
    "--frame-scores": "a frame score table",
    "--frames-out": "where the frame score table is written",
    "--labels": "a table of true labels (video_id,label)",
    "--val": "the validation data, in the form the command reads",
    "--train": "training shards",
    "--shards": "face shards to read",
    "--stacker": "a stacker JSON (dfd stack fit)",
    "--threshold": "P(fake) threshold of the verdict",
    "--threshold-policy": "how the threshold is chosen",
    "--aggregation": "face scores -> video/person score rule",
    "--sampler": "frame sampler",
    "--stride": "frame step of the stride sampler",
    "--detector": "face detector name",
    "--detect-side": "long side frames are searched for faces at",
    "--margin": "face crop framing",
    "--crop-margin": "framing of a crop set's images",
    "--all-faces": "score/keep every person as a track",
    "--crops": "inputs are face crops",
    "--list": "a file listing inputs",
    "--format": "output format",
    "--plot": "folder of score timelines",
    "--faces": "folder of face crops used",
    "--explain": "folder of attribution heat-map overlays",
    "--seed": "random seed",
    "--sample": "at most N items per group, drawn at random",
    "--flag": "the level from which a figure is flagged",
    "--items": "where the per-item table is written",
    "--layout": "input layout",
    "--workers": "how many things run at once",
    "--limit": "only the first N input items",
    "--show": "how many problems to name",
    "--batch-size": "examples per batch",
    "--clip-len": "faces per clip",
    "--max-clips": "clips per video",
    "--split": "a manifest split name to keep",
    "--source": "a record source name to keep",
    "--reference": "the model the others are measured against",
    "--split-col": "column holding the split name",
    "--group-col": "identity column",
    "--model-name": "name written in the model column",
    "--no-keras": "skip model.keras",
    "--missing": "how videos without a score count",
    "--bootstrap": "bootstrap resamples",
    "--log-loss-clip": "log-loss clipping",
    "--timelines": "number of timelines in a report",
    "--title": "report title",
    "--no-average": "leave out the average",
    "--C": "inverse regularisation strength",
    "--oof": "out-of-fold folds",
    "--oof-out": "out-of-fold score table",
    "--fractions": "split fractions",
    "--names": "split names",
    "--pooled": "split sources together",
    "--no-stratify": "no label balancing",
    "--use-given": "keep given splits",
    "--problems": "problems table",
    "--shard-records": "videos per shard",
    "--retry-failures": "retry failed items",
    "--contact-sheet": "contact sheet PNG",
    "--host": "address to bind", "--port": "port to bind",
    "--max-upload-mb": "largest upload", "--timeout": "per-request limit",
    "--max-queue": "requests waiting",
    "--config": "a config JSON", "--model-kwargs": "model arguments",
    "--train-split": "split of --train", "--val-split": "split of --val",
    "--mix": "source shares", "--paired": "paired batches",
    "--input-kind": "frames or clips", "--face-size": "face side",
    "--max-faces-per-record": "faces per record", "--epochs": "epochs",
    "--steps-per-epoch": "steps per epoch", "--validation-steps": "validation steps",
    "--learning-rate": "learning rate", "--optimizer": "optimizer", "--loss": "loss",
    "--class-balance": "class balance", "--strategy": "distribution strategy",
    "--loop": "training loop", "--patience": "early-stopping patience",
    "--no-early-stopping": "no early stopping", "--no-augment": "no augmentation",
    "--augment": "augmentation fields", "--phases": "training phases",
    "--mixed-precision": "mixed precision", "--jit-compile": "XLA", "--tensorboard": "logs",
    "--dry-run": "print the config only",
    "--engine": "where prep's work runs", "--scheduler": "a Dask scheduler",
    "--crop-landmarks": "landmarks of a crop set", "--fakes": "which FAKE examples",
    "--sbi-ratio": "share of self-blended fakes", "--sbi": "self-blended fake fields",
    "--reweight": "loss weights that balance a face property",
    "--reweight-bins": "its quantile bins",
    "--average-from": "epoch the weight average starts at",
    "--sam-rho": "radius of sharpness-aware minimization",
    "--uncertain-scores": "score table the uncertain band is chosen on",
    "--uncertain-frames": "frame table of the same scoring, for the band's exact video scores",
    "--min-precision": "precision outside the uncertain band",
    "--precision-confidence": "confidence of the lower bound on the band's precision",
    "--uncertain": "the uncertain band of verdicts",
    "--version": "export version number (the OUT/<version>/ folder)",
    "--overwrite": "replace an existing export version",
    "--trained-on": "the sources a model was trained on (NAME=SOURCES)",
    "--clips": "a model's dfd detect table of the labelled clips (NAME=CSV)",
    "--clip-labels": "folder of the labelled clips (their labels)",
    "--max-decoded-mpix": "decoded pixels per request",
}
#: spellings that are the same option as a MEANINGS key
SAME = {"-o": "-o/--out", "--out": "-o/--out", "--run-dir": "-o/--out", "--lr": "--learning-rate",
        "--no-paired": "--paired", "--no-mixed-precision": "--mixed-precision",
        "--no-jit-compile": "--jit-compile", "--no-tensorboard": "--tensorboard"}
#: (command, old spelling) -> new spelling, kept one release
DEPRECATED = {("evaluate", "--frames"): "--frame-scores", ("compare", "--model"): "--scores",
              ("stack fit", "--model"): "--scores", ("stack predict", "--model"): "--scores",
              ("check-split", "--limit"): "--show"}
#: the value kind of a flag must match everywhere (a clash like int frames vs a table shows)
#: flags whose value takes two forms of one meaning
KIND_EXEMPT = {"--scores",  # one table, or NAME=PATH entries: score tables both
               "--margin"}  # detect/serve: auto or a number; prep: a number

WRITES = {"audit", "prep", "split", "train", "predict", "export", "evaluate", "stack fit",
          "stack predict", "compare", "calibrate", "detect"}
PROGRESS = {"audit", "prep", "predict", "evaluate", "compare", "detect"}
WEIGHTS = {"predict", "export", "calibrate", "detect", "serve"}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    out = {}
    for name in cli.SUBCOMMANDS:
        try:
            top = cli.build_parser([name])
        except cli.CommandUnavailable as err:  # an extra not installed here
            pytest.skip(str(err))
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            out.update({f"{name} {n}": q for n, q in nested[0].choices.items()})
        else:
            out[name] = p
    return out


@pytest.fixture(scope="module")
def parsers():
    return _parsers()


def _options(p):
    for a in p._actions:
        if a.option_strings and not isinstance(a, argparse._HelpAction):
            yield a


#: the checked number types of dfd_app.cli.common, by the kind of number they take
CHECKED_NUMBERS = {common.probability: "float", common.clip_eps: "float", common.count: "int"}


def _kind(a) -> str:
    if a.nargs == 0:
        return "switch"
    if a.type in (int, float):
        return a.type.__name__
    if a.type in CHECKED_NUMBERS:
        return CHECKED_NUMBERS[a.type]
    return "text"


def test_every_option_has_help(parsers):
    lacking = [f"{cmd} {a.option_strings}" for cmd, p in parsers.items() for a in _options(p)
               if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    positional = [f"{cmd} {a.dest}" for cmd, p in parsers.items() for a in p._actions
                  if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
                  and not (a.help or "").strip()]
    assert not lacking + positional, f"options without help: {lacking + positional}"


def test_shared_flags_where_they_apply(parsers):
    def has(cmd, flag):
        return any(flag in a.option_strings for a in _options(parsers[cmd]))

    assert {c for c in parsers if has(c, "-o") and has(c, "--out")} == WRITES
    assert {c for c in parsers if has(c, "--no-progress")} == PROGRESS
    assert {c for c in parsers if has(c, "--weights-dir")} == WEIGHTS


def test_a_flag_name_means_one_thing(parsers):
    kinds: dict[str, set] = {}
    unknown = []
    for cmd, p in parsers.items():
        for a in _options(p):
            if isinstance(a, DeprecatedAlias):
                continue
            for flag in a.option_strings:
                key = SAME.get(flag, flag)
                if key not in MEANINGS:
                    unknown.append(f"{cmd} {flag}")
                kinds.setdefault(key, set()).add(_kind(a))
    assert not unknown, f"flags without an entry in the table of meanings: {unknown}"
    clashes = {k: v for k, v in kinds.items() if len(v) > 1 and k not in KIND_EXEMPT}
    assert not clashes, f"one flag name, several kinds of value: {clashes}"
    # the renamed clashes are gone: --frames is a count, --model is never a score table
    assert kinds["--frames"] == {"int"}
    for cmd in ("compare", "stack fit", "stack predict"):
        model = [a for a in _options(parsers[cmd]) if "--model" in a.option_strings]
        assert model and all(isinstance(a, DeprecatedAlias) for a in model), cmd


def test_deprecated_spellings_are_aliases(parsers):
    for (cmd, old), new in DEPRECATED.items():
        (alias,) = [a for a in _options(parsers[cmd]) if old in a.option_strings]
        (current,) = [a for a in _options(parsers[cmd]) if new in a.option_strings]
        assert isinstance(alias, DeprecatedAlias) and alias.dest == current.dest, (cmd, old)


def test_old_spellings_parse_into_the_new_options(tmp_path):
    args = cli.build_parser(["evaluate"]).parse_args(
        ["evaluate", "--scores", "v.csv", "--frames", "f.csv", "-o", str(tmp_path)])
    assert args.frame_scores == Path("f.csv")
    assert "--frames" in getattr(args, DEPRECATED_DEST)[0]
    args = cli.build_parser(["compare"]).parse_args(
        ["compare", "--model", "a=a.csv", "--scores", "b=b.csv", "--model", "c=c.csv",
         "-o", str(tmp_path)])
    assert args.scores == [("a", Path("a.csv")), ("b", Path("b.csv")), ("c", Path("c.csv"))]
    args = cli.build_parser(["stack"]).parse_args(
        ["stack", "fit", "--model", "a=a.csv", "-o", "s.json"])
    assert args.scores == [("a", Path("a.csv"))]
    args = cli.build_parser(["evaluate"]).parse_args(
        ["evaluate", "--scores", "v.csv", "--frame-scores", "f.csv", "-o", str(tmp_path)])
    assert not getattr(args, DEPRECATED_DEST, None)


def test_an_old_spelling_logs_a_deprecation(tmp_path, caplog):
    manifest = tmp_path / "m.csv"
    manifest.write_text("video_id,split,group\na,train,g1\nb,test,g2\n")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["check-split", str(manifest), "--limit", "3"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--limit is deprecated" in m and "--show" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli.main(["check-split", str(manifest), "--show", "3"]) == 0
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


def test_compare_without_score_tables_is_one_clear_error(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert cli.main(["compare", "-o", str(tmp_path / "r")]) == 2
    assert any("--scores NAME=PATH" in r.getMessage() for r in caplog.records)


def _stderr_of(*argv) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL"):
        env.pop(k, None)
    code = ("import sys; from dfd_app.cli.main import main; sys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    return res.stderr


def test_tensorflow_startup_lines_hidden_unless_debug(tmp_path):
    argv = ["export", "--model", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "e")]
    debug = _stderr_of("-vv", *argv)
    default = _stderr_of(*argv)
    quiet = _stderr_of("-q", *argv)
    for err in (debug, default, quiet):
        assert "missing.keras" in err, err  # the error line stays
    startup = ("oneDNN", "absl::InitializeLog", "port.cc")
    if not any(s in debug for s in startup):
        pytest.skip("this TensorFlow build prints no start-up lines")
    assert not [s for s in startup if s in default], default
    assert not [s for s in startup if s in quiet], quiet


def test_startup_filter_keeps_lines_that_are_not_noise(capfd):
    from dfd.quiet import stderr_fd_filtered
    from dfd_app.cli.main import TF_STARTUP_NOISE

    def drop(line):
        return any(n in line for n in TF_STARTUP_NOISE)

    with stderr_fd_filtered(drop):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see\n"
                    b"E0000 something really went wrong\n")
    err = capfd.readouterr().err
    assert "something really went wrong" in err and "oneDNN" not in err


def test_progress_totals_come_from_the_shards_index(tmp_path):
    from dfd.inference import clips, frames
    from tests.test_training import write_tiny_shards

    shards = write_tiny_shards(tmp_path / "s", records=6, faces=3, max_records=4)
    assert frames._stored_faces(shards) == 18
    assert clips._stored_records(shards) == 6
    assert frames._stored_faces(tmp_path / "nowhere.tfrecord") is None


def test_no_progress_switches_every_bar_off(monkeypatch):
    from dfd import progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    try:
        progress.set_enabled(True)
        with progress.bar(5, "x") as shown:
            assert not shown.disable and shown.total == 5
        progress.set_enabled(False)
        with progress.bar(5, "x") as hidden:
            assert hidden.disable
    finally:
        progress.set_enabled(True)


def test_detect_counts_its_inputs_for_the_bar(tmp_path, monkeypatch):
    from dfd import progress
    from dfd_app.detect import output, pipeline

    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"")
    totals = []
    monkeypatch.setattr(pipeline, "build_context", lambda **kw: object())
    monkeypatch.setattr(output, "detect_to", lambda items, ctx, out, fmt, bar: (
        totals.append((len(list(items)), bar.total)), 0)[1])
    real_bar = progress.bar
    monkeypatch.setattr(progress, "bar", lambda total=None, *a, **k: real_bar(total, *a, **k))
    assert cli.main(["detect", str(tmp_path), "--no-progress"]) == 0
    assert totals == [(3, 3)]


def test_shared_option_helpers_load_no_heavy_library():
    """Every command's parser uses dfd_app.cli.common: its help must not wait for
    scikit-learn, pandas or TensorFlow (the evaluation's choices live in a light module)."""
    assert loaded_by("dfd_app.cli.common", ("sklearn", "pandas", "tensorflow")) == []


def loaded_by(modules: str, heavy) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after importing ``modules``."""
    code = (f"import json, sys, {modules}; "
            f"print(json.dumps(sorted(m for m in {tuple(heavy)!r} if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_detect_and_serve_load_no_scikit_learn():
    """Applying a stacker needs numpy alone (dfd.evaluation.stacker) and the per-frame plot no
    curves (dfd.evaluation.figures): scikit-learn's second of import is for fitting only."""
    modules = "dfd_app.detect.pipeline, dfd_app.detect.artifacts, dfd_app.serve.service"
    assert loaded_by(modules, ("sklearn",)) == []
