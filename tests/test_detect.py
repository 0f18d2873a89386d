"""dfd detect: inputs, detect_video (real decode + fake detector + fake model), CLI outputs."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dfd_app.detect import inputs, pipeline
from dfd_app.detect import output as detect_output

SAMPLE = Path(__file__).resolve().parents[1] / "dfd_app" / "samples" / "astronaut.mp4"


class BrightnessScorer:
    """P(fake) = mean brightness of the face / 255: deterministic and checkable."""

    name = "fake-brightness"

    def __init__(self):
        self.calls = 0

    def __call__(self, faces):
        self.calls += 1
        return np.asarray(faces, np.float64).reshape(len(faces), -1).mean(1) / 255.0


def fake_ctx(n_frames=4, detector_fn=None, scorer=None, **kw) -> pipeline.DetectContext:
    from data_prep.faces.detectors import FakeDetector

    return pipeline.DetectContext(scorer=scorer or BrightnessScorer(),
                                  detector=FakeDetector(detector_fn),
                                  extract_cfg=pipeline.make_extract_config(n_frames, "uniform"),
                                  **kw)


def fake_video_faces(tracks: dict[int, list[float]], frames_searched=8):
    """A VideoFaces stand-in whose faces have constant brightness value*255 per face."""
    tr = []
    for t, values in tracks.items():
        faces = [np.full((256, 256, 3), round(v * 255), np.uint8) for v in values]
        tr.append(SimpleNamespace(track=t, faces=faces, frame_indices=list(range(len(values))),
                                  boxes=[(0, 0, 10, 10)] * len(values),
                                  confidences=[0.99] * len(values)))
    return SimpleNamespace(fps=25.0, frame_count=100, width=64, height=48, sampler="uniform:8",
                           frames_searched=frames_searched, tracks=tr,
                           timings={"decode": 0.1, "detect": 0.2, "align": 0.05})


# ------------------------------------------------------------------ inputs

def test_iter_inputs_files_folders_lists(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.mp4", "a/b/two.MOV", "a/b/notes.txt", "a/.hidden.mp4", "three.webm"):
        (tmp_path / name).write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n\nthree.webm\n" + str(tmp_path / "a" / "one.mp4") + "\nmissing.mp4\n")
    got = list(inputs.iter_inputs([str(tmp_path / "a"), "@" + str(lst)]))
    paths = [Path(i.path).name for i in got]
    assert paths == ["one.mp4", "two.MOV", "three.webm", "one.mp4", "missing.mp4"]
    assert [bool(i.error) for i in got] == [False, False, False, False, True]
    assert "no such file" in got[-1].error
    bad = list(inputs.iter_inputs([], [str(tmp_path / "nolist.txt")]))
    assert len(bad) == 1 and "cannot read list file" in bad[0].error


def test_iter_inputs_is_lazy(tmp_path):
    gen = inputs.iter_inputs([str(tmp_path / "nothing.mp4")])
    assert iter(gen) is gen  # a generator: nothing is listed up front


# ------------------------------------------------------------------ detect_video

def test_detect_video_real_decode(tiny_video_factory):
    path = tiny_video_factory("bright.mp4", frames=12, size=(160, 120),
                              draw=lambda f, i: f.__setitem__(slice(None), 200))
    ctx = fake_ctx(n_frames=4)
    rec = pipeline.detect_video(path, ctx)
    assert rec["status"] == "ok", rec["error"]
    assert rec["n_faces"] == 4 and rec["n_frames"] == 4
    assert rec["p_fake"] == pytest.approx(200 / 255, abs=0.03)
    assert rec["label"] == "FAKE" and rec["model"] == "fake-brightness"
    assert len(rec["frames"]) == 4 and len(rec["frames"][0]["box"]) == 4
    assert rec["tracks"][0]["n_faces"] == 4
    assert set(rec["timings"]) >= {"decode", "detect", "align", "model", "total"}
    dark = pipeline.detect_video(path, fake_ctx(threshold=0.9))
    assert dark["label"] == "REAL"  # the same score under a higher threshold


def test_no_face_and_unreadable_are_explicit(tiny_video_factory, tmp_path):
    path = tiny_video_factory("noface.mp4", frames=8, size=(64, 48))
    rec = pipeline.detect_video(path, fake_ctx(detector_fn=lambda f, i: []))
    assert rec["status"] == "no_face" and rec["label"] == "UNKNOWN"
    assert math.isnan(rec["p_fake"]) and rec["n_faces"] == 0
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    rec = pipeline.detect_video(junk, fake_ctx())
    assert rec["status"] == "error" and rec["label"] == "UNKNOWN" and math.isnan(rec["p_fake"])
    assert "VideoReadError" in rec["error"]


def test_batch_continues_after_a_bad_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    items = inputs.iter_inputs([str(bad), str(tmp_path / "gone.mp4"), str(SAMPLE)])
    recs = list(pipeline.iter_detect(items, fake_ctx(n_frames=2)))
    assert [r["status"] for r in recs] == ["error", "error", "ok"]


def test_batch_finds_the_next_videos_faces_while_scoring_this_one():
    """iter_detect overlaps the two stages across videos and keeps the input order: the
    scorer of video k waits until the faces of video k+1 are being extracted."""
    import threading

    started = {name: threading.Event() for name in ("a", "b", "c")}
    brightness = {"a": 0.1, "b": 0.9, "c": 0.5}
    ctx = fake_ctx()
    seen = []

    def extract(path, det, cfg):
        started[Path(path).stem].set()
        if Path(path).stem == "b":
            raise ValueError("b is broken")
        return fake_video_faces({0: [brightness[Path(path).stem]] * 2})

    class Waiting(BrightnessScorer):
        def __call__(self, faces):
            name = {26: "a", 128: "c"}[int(faces[0, 0, 0, 0])]
            following = {"a": "b", "c": None}[name]
            seen.append((name, following is None or started[following].wait(10)))
            return super().__call__(faces)

    ctx.scorer, ctx.extract = Waiting(), extract
    items = ["a.mp4", "b.mp4", inputs.InputItem("gone.mp4", "no such file"), "c.mp4"]
    recs = list(pipeline.iter_detect(items, ctx))
    assert [Path(r["video"]).stem for r in recs] == ["a", "b", "gone", "c"]
    assert [r["status"] for r in recs] == ["ok", "error", "error", "ok"]
    assert "b is broken" in recs[1]["error"]
    assert seen == [("a", True), ("c", True)]


@pytest.mark.parametrize("how, expected", [("mean", 0.5), ("max", 0.9), ("vote", 0.5)])
def test_tracks_aggregation_and_max_over_people(how, expected):
    vf = fake_video_faces({0: [0.1, 0.1, 0.1, 0.1], 1: [0.1, 0.9, 0.9, 0.1]})
    ctx = fake_ctx(aggregation=how)
    ctx.extract = lambda path, det, cfg: vf
    rec = pipeline.detect_video("x.mp4", ctx)
    assert rec["status"] == "ok" and rec["n_frames"] == 8 and rec["n_faces"] == 8
    assert {t["track"] for t in rec["tracks"]} == {0, 1}
    assert rec["p_fake"] == pytest.approx(expected, abs=0.01)  # the most suspicious person


def test_bad_model_output_is_an_error_row():
    vf = fake_video_faces({0: [0.2, 0.3]})
    for out in (lambda f: np.full(len(f), 1.5), lambda f: np.zeros(len(f) + 1)):
        ctx = fake_ctx(scorer=type("Broken", (), {"name": "broken", "__call__": staticmethod(out)})())
        ctx.extract = lambda path, det, cfg: vf
        rec = pipeline.detect_video("x.mp4", ctx)
        assert rec["status"] == "error" and math.isnan(rec["p_fake"]), rec


def test_stack_scorer_matches_the_stacker():
    pd = pytest.importorskip("pandas")
    from dfd.evaluation import stacking
    from dfd.evaluation.stacker import build_features
    from dfd.inference.scorers import ModelLoadError, StackScorer

    rng = np.random.default_rng(0)
    frames = {n: pd.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(20)], 3),
                               "track": 0, "frame_index": np.tile([0, 1, 2], 20),
                               "p_fake": rng.random(60)}) for n in ("a", "b")}
    y = pd.Series({f"v{i}": i % 2 for i in range(20)})
    stacker = stacking.fit(build_features(frames), y)
    scorers = {"a": lambda f: np.full(len(f), 0.8), "b": lambda f: np.full(len(f), 0.3)}
    ss = StackScorer(stacker, scorers)
    per = ss.score_models(np.zeros((3, 256, 256, 3), np.uint8))
    feats = pd.DataFrame({"a:mean": [0.8], "a:vote": [1.0], "a:max": [0.8],
                          "b:mean": [0.3], "b:vote": [0.0], "b:max": [0.3]})
    assert ss.video_score(per) == pytest.approx(float(stacker.predict_features(feats).iloc[0]))
    with pytest.raises(ModelLoadError, match="needs model"):
        StackScorer(stacker, {"a": scorers["a"]})
    ctx = fake_ctx(scorer=ss)
    ctx.extract = lambda path, det, cfg: fake_video_faces({0: [0.5, 0.5, 0.5]})
    rec = pipeline.detect_video("x.mp4", ctx)
    assert rec["p_fake"] == pytest.approx(ss.video_score(per))
    assert rec["frames"][0]["p_fake"] == pytest.approx(0.55)  # mean of the models per face


def test_parse_model_specs():
    from dfd.inference.scorers import ModelLoadError, parse_model_specs

    assert parse_model_specs(["a=x.keras", "b = meso4_df"]) == {"a": "x.keras", "b": "meso4_df"}
    for bad in (["x.keras"], ["a=1", "a=2"], ["=x"]):
        with pytest.raises(ModelLoadError):
            parse_model_specs(bad)


def test_default_model_is_the_shipped_preset(tmp_path, monkeypatch):
    from dfd import presets
    from dfd.inference import scorers as models

    shipped = presets.get(models.DEFAULT_MODEL)
    assert shipped.path and models.default_model() == shipped.path
    assert shipped.face_margin == 1.06 and shipped.calibration  # its preset travels with it
    monkeypatch.setattr(presets, "REGISTRY", dict(presets.REGISTRY))
    (tmp_path / "mine.keras").write_bytes(b"")
    presets.register_local(models.DEFAULT_MODEL, tmp_path / "mine.keras")
    assert models.default_model() == str(tmp_path / "mine.keras")


def test_default_model_without_any_model_is_a_clear_error(tmp_path, monkeypatch):
    from dfd import presets
    from dfd.inference import scorers as models

    monkeypatch.setattr(presets, "REGISTRY", {k: v for k, v in presets.REGISTRY.items()
                                              if k != models.DEFAULT_MODEL})
    monkeypatch.setenv(presets.ENV_DIR, str(tmp_path / "empty"))
    with pytest.raises(models.ModelLoadError, match="--model"):
        models.default_model()


# ------------------------------------------------------------------ CLI

@pytest.fixture
def cli_ctx(monkeypatch):
    seen = {}

    def build(**kw):
        seen.update(kw)
        opts = {k: kw[k] for k in ("threshold", "aggregation", "plot_dir", "faces_dir", "details",
                                   "crops")}
        return fake_ctx(n_frames=kw["n_frames"], **opts)

    monkeypatch.setattr(pipeline, "build_context", build)
    return seen


def run_cli(argv, capsys):
    from dfd_app.cli.main import main

    code = main(["-q", "detect", *argv])
    return code, capsys.readouterr().out


def test_cli_csv_round_trip(tmp_path, capsys, cli_ctx):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF0000AVI garbage")
    code, out = run_cli([str(SAMPLE), str(bad), "--frames", "2", "--threshold", "0.3"], capsys)
    assert code == 1  # one row failed
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == pipeline.CSV_COLUMNS
    assert "label" not in rows[0]  # a prediction is never called a label in the CSV
    assert rows[0]["status"] == "ok" and rows[0]["verdict"] in ("FAKE", "REAL")
    assert float(rows[0]["threshold"]) == 0.3 and rows[0]["n_faces"] == "2"
    assert rows[1]["status"] == "error" and rows[1]["p_fake"] == ""
    assert rows[1]["verdict"] == "UNKNOWN"
    assert cli_ctx["model"] is None and cli_ctx["aggregation"] == "mean"


def test_cli_jsonl_plot_and_faces(tmp_path, capsys, cli_ctx):
    out_file = tmp_path / "out.jsonl"
    code, _ = run_cli([str(SAMPLE), "--frames", "3", "--format", "jsonl", "--out", str(out_file),
                       "--plot", str(tmp_path / "plots"), "--faces", str(tmp_path / "faces"),
                       "--aggregation", "max"], capsys)
    assert code == 0
    recs = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["aggregation"] == "max"
    assert len(recs[0]["frames"]) == 3 and recs[0]["frames"][0]["box"]
    assert recs[0]["p_fake"] == pytest.approx(max(f["p_fake"] for f in recs[0]["frames"]))
    pngs = list((tmp_path / "plots").glob("*.png"))
    jpgs = list((tmp_path / "faces").rglob("*.jpg"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(jpgs) == 3 and jpgs[0].read_bytes()[:2] == b"\xff\xd8"


def test_cli_option_errors(capsys, cli_ctx):
    assert run_cli([], capsys)[0] == 2
    assert run_cli([str(SAMPLE), "--model", "a", "--model", "b"], capsys)[0] == 2
    assert run_cli([str(SAMPLE), "--stacker", "s.json"], capsys)[0] == 2


def test_json_line_has_no_nan():
    line = detect_output.to_json({"p_fake": float("nan"), "x": [np.float32(0.5)], "y": {"z": np.int64(3)}})
    assert json.loads(line) == {"p_fake": None, "x": [0.5], "y": {"z": 3}}


def test_load_stacker_round_trip(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    from dfd.evaluation import stacking
    from dfd.evaluation.stacker import build_features
    from dfd.inference import scorers as models

    rng = np.random.default_rng(1)
    frames = {n: pd.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(12)], 2),
                               "track": 0, "frame_index": np.tile([0, 1], 12),
                               "p_fake": rng.random(24)}) for n in ("a", "b")}
    path = stacking.fit(build_features(frames), pd.Series({f"v{i}": i % 2 for i in range(12)})) \
        .save(tmp_path / "stacker.json")
    loaded = []
    monkeypatch.setattr(models, "load_scorer",
                        lambda spec, name=None, runtime="auto":
                        loaded.append((name, spec, runtime)) or BrightnessScorer())
    ss = models.load_stacker(str(path), ["a=x.keras", "b=meso4_df", "c=unused.keras"],
                             runtime="keras")
    assert sorted(loaded) == [("a", "x.keras", "keras"), ("b", "meso4_df", "keras")]
    assert ss.name == "stacker(a,b)"
    with pytest.raises(models.ModelLoadError, match="cannot load stacker"):
        models.load_stacker(str(tmp_path / "missing.json"), ["a=x"])


# ------------------------------------------------------------------ face framing (margin)

def _recording_scorer(name, margin, centre=0.0):
    """A ModelScorer over a Scorer that remembers the faces it was given."""
    from dfd.inference.loading import Scorer
    from dfd.inference.scorers import ModelScorer

    seen = []

    def fn(faces):
        seen.append(np.array(faces))
        return np.full(len(faces), 0.25, np.float32)

    inner = Scorer(fn, name, "fake", face_margin=margin)
    inner.face_centre = centre
    return ModelScorer(inner, name), seen


def _two_model_stacker(names, rng):
    """A stacker fitted on random frame tables of the two models ``names``."""
    pd = pytest.importorskip("pandas")
    from dfd.evaluation import stacking
    from dfd.evaluation.stacker import build_features

    frames = {n: pd.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(10)], 2),
                               "track": 0, "frame_index": np.tile([0, 1], 10),
                               "p_fake": rng.random(20)}) for n in names}
    return stacking.fit(build_features(frames), pd.Series({f"v{i}": i % 2 for i in range(10)}))


def test_each_model_gets_faces_framed_as_it_was_trained():
    from dfd.framing import recrop_margin
    from dfd.inference.scorers import StackScorer, choose_framing

    tight, tight_seen = _recording_scorer("tight", 1.05)
    wide, wide_seen = _recording_scorer("wide", 1.3)
    rng = np.random.default_rng(0)
    ss = StackScorer(_two_model_stacker(("tight", "wide"), rng), {"tight": tight, "wide": wide})
    assert choose_framing(ss) == (1.3, 0.0)  # extract at the widest, crop for the tighter model
    faces = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ss.score_models(faces)
    np.testing.assert_array_equal(wide_seen[-1], faces)
    np.testing.assert_array_equal(tight_seen[-1], recrop_margin(faces, 1.3, 1.05))
    assert not np.array_equal(tight_seen[-1], faces)
    # a number given by the user: every model gets those faces as they are
    assert choose_framing(ss, "1.2") == (1.2, 0.0)
    ss.score_models(faces)
    np.testing.assert_array_equal(tight_seen[-1], faces)
    # one model alone: extracted at its own framing, nothing cropped
    alone, alone_seen = _recording_scorer("alone", 1.05, centre=-0.033)
    assert choose_framing(alone) == (1.05, -0.033)
    alone(faces)
    np.testing.assert_array_equal(alone_seen[-1], faces)
    # a model recording nothing gets MesoNet's framing
    unknown, _ = _recording_scorer("unknown", None)
    assert choose_framing(unknown, "auto") == (1.3, 0.0) and unknown.face_margin == 1.3
    for bad, msg in (("wide", "must be a number, got 'wide'"), (9, r"\[0.5, 3\], got 9")):
        with pytest.raises(ValueError, match=msg):
            choose_framing(unknown, bad)


def test_models_centred_differently_get_their_own_squares_of_one_extraction():
    from dfd.framing import recrop_margin
    from dfd.inference.scorers import StackScorer, choose_framing

    low, low_seen = _recording_scorer("low", 1.3)
    high, high_seen = _recording_scorer("high", 1.3, centre=-0.1)
    ss = StackScorer(_two_model_stacker(("low", "high"), np.random.default_rng(1)),
                     {"low": low, "high": high})
    m, c = choose_framing(ss)
    # centred midway, wide enough that both 1.3 squares fit: 1.3 + 2 * 0.05
    assert c == pytest.approx(-0.05) and m == pytest.approx(1.4)
    yy = np.repeat(np.arange(140, dtype=np.uint8)[:, None], 140, 1)
    faces = np.repeat(np.stack([yy, yy, yy], -1)[None], 2, 0)  # row number as the grey level
    ss.score_models(faces)
    assert low_seen[-1].shape == high_seen[-1].shape == faces.shape
    np.testing.assert_array_equal(low_seen[-1], recrop_margin(faces, 1.4, 1.3, shift=0.05))
    np.testing.assert_array_equal(high_seen[-1], recrop_margin(faces, 1.4, 1.3, shift=-0.05))
    # the model centred higher sees the upper rows: 5 of the 140 rows above the middle square
    assert high_seen[-1][0, 0, 0, 0] == 0 and low_seen[-1][0, 0, 0, 0] == 10


def test_build_context_extracts_at_the_models_framing(monkeypatch):
    from dfd.inference import scorers as models

    scorer, _ = _recording_scorer("tight", 1.05)
    monkeypatch.setattr(models, "load_scorer", lambda spec=None, name=None, runtime="auto": scorer)
    ctx = pipeline.build_context(model="x", detector="fake")
    assert ctx.extract_cfg.margin == 1.05 and ctx.extract_cfg.centre == 0.0
    assert ctx.extract_cfg.all_faces is False  # largest face per frame by default
    ctx = pipeline.build_context(model="x", detector="fake", margin=1.3, all_faces=True)
    assert ctx.extract_cfg.margin == 1.3 and ctx.extract_cfg.all_faces is True
    ctx.extract = lambda path, det, cfg: fake_video_faces({0: [0.5, 0.5]})
    meta = pipeline.detect_video("x.mp4", ctx)["meta"]
    assert meta["face_margin"] == 1.3 and meta["face_centre"] == 0.0
    # the authors' weights: cut around MesoNet's centre
    authors, _ = _recording_scorer("authors", 1.3, centre=-0.033)
    monkeypatch.setattr(models, "load_scorer", lambda spec=None, name=None, runtime="auto": authors)
    ctx = pipeline.build_context(model="x", detector="fake")
    assert (ctx.extract_cfg.margin, ctx.extract_cfg.centre) == (1.3, -0.033)
    # given crops are never re-framed, whatever the models' margins
    wide, _ = _recording_scorer("wide", 1.3)
    monkeypatch.setattr(models, "load_scorer", lambda spec=None, name=None, runtime="auto": wide)
    pipeline.build_context(model="x", detector="fake", margin=1.3, crops=True)
    assert wide.input_margin is None


def test_cli_passes_the_margin_and_face_choice(capsys, cli_ctx):
    assert run_cli([str(SAMPLE), "--frames", "2"], capsys)[0] == 0
    assert cli_ctx["margin"] == "auto" and cli_ctx["all_faces"] is False
    assert run_cli([str(SAMPLE), "--frames", "2", "--all-faces"], capsys)[0] == 0
    assert cli_ctx["all_faces"] is True
    assert run_cli([str(SAMPLE), "--frames", "2", "--margin", "1.2"], capsys)[0] == 0
    assert cli_ctx["margin"] == "1.2" and cli_ctx["runtime"] == "auto"
    assert run_cli([str(SAMPLE), "--frames", "2", "--runtime", "keras"], capsys)[0] == 0
    assert cli_ctx["runtime"] == "keras"
    with pytest.raises(SystemExit) as bad:  # argparse: exit status 2, the choices named
        run_cli([str(SAMPLE), "--frames", "2", "--runtime", "onnx"], capsys)
    assert bad.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err


# ------------------------------------------------------------------ temporal models

def test_a_temporal_model_scores_videos_like_predict_shards(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from data_prep import shard_writer
    from dfd import export, schema
    from dfd.inference import clips as predict
    from dfd.inference.scorers import ClipScorer, load_scorer
    from tests.test_temporal_model import FACE, build

    keras.utils.set_random_seed(3)
    model = build(clip_len=4, dropout=0.0, pooling="mean")
    model.save(tmp_path / "clip.keras")
    export.export_savedmodel(model, tmp_path / "clip_export", face_size=FACE)
    rng = np.random.default_rng(4)
    tracks = {0: rng.integers(0, 256, (11, FACE, FACE, 3), dtype=np.uint8),  # 3 clips
              1: rng.integers(0, 256, (3, FACE, FACE, 3), dtype=np.uint8)}   # 1 padded clip
    vf = SimpleNamespace(
        fps=25.0, frame_count=100, width=64, height=48, sampler="uniform:11", frames_searched=11,
        timings={}, tracks=[SimpleNamespace(track=t, faces=list(f), frame_indices=list(range(len(f))),
                                            boxes=[(0, 0, 10, 10)] * len(f),
                                            confidences=[0.99] * len(f)) for t, f in tracks.items()])
    # the same faces as shard records, scored by the shard path
    with shard_writer.ShardWriter(tmp_path / "shards", "part") as w:
        for t, f in tracks.items():
            w.add(schema.FaceRecord(video_id=f"t{t}", label=1, track=0, faces=[
                schema.encode_png(x) for x in f], frame_indices=list(range(len(f)))))
    shard_writer.build_index(tmp_path / "shards")
    _, want = predict.predict_shards(model, tmp_path / "shards", max_clips=4, face_size=FACE)
    want = want.set_index("video_id")["p_fake"]
    for spec in (tmp_path / "clip.keras", tmp_path / "clip_export"):
        scorer = load_scorer(str(spec))
        assert isinstance(scorer, ClipScorer) and scorer.clip_len == 4
        ctx = fake_ctx(scorer=scorer, aggregation="mean")
        ctx.extract = lambda path, det, cfg: vf
        rec = pipeline.detect_video("x.mp4", ctx)
        assert rec["status"] == "ok", rec
        by_track = {t["track"]: t for t in rec["tracks"]}
        assert by_track[0]["n_clips"] == 3 and by_track[1]["n_clips"] == 1
        assert by_track[0]["p_fake"] == pytest.approx(want["t0"], abs=1e-5)
        assert by_track[1]["p_fake"] == pytest.approx(want["t1"], abs=1e-5)
        assert rec["p_fake"] == pytest.approx(max(want["t0"], want["t1"]), abs=1e-5)
        assert len(rec["frames"]) == 14  # every face carries its clip's score


# ------------------------------------------------------------------ face crops (--crops)

def _write_crops(folder, n=3, size=40, seed=0):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        p = folder / f"face{i}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def test_crops_are_scored_as_the_shard_reader_reads_them(tmp_path):
    pytest.importorskip("tensorflow")
    from data_prep import shard_writer
    from dfd import schema
    from dfd.inference.frames import predict_frames
    from dfd.inference.scorers import load_scorer
    from mesonet_tf.models import Meso4

    paths = _write_crops(tmp_path / "crops", n=3, size=40)
    (tmp_path / "crops" / "broken.png").write_bytes(b"\x89PNG not really")
    model = Meso4(input_shape=(64, 64, 3))
    model.save(tmp_path / "m.keras")
    with shard_writer.ShardWriter(tmp_path / "shards", "part") as w:
        for p in paths:  # a crop set's shards keep the JPEG bytes as they are
            w.add(schema.FaceRecord(video_id=p.name, label=1, faces=[p.read_bytes()],
                                    frame_indices=[0]))
    shard_writer.build_index(tmp_path / "shards")
    want = predict_frames(model, tmp_path / "shards", face_size=64).set_index("video_id")["p_fake"]
    ctx = pipeline.DetectContext(scorer=load_scorer(str(tmp_path / "m.keras")), crops=True,
                                 extract_cfg=pipeline.make_extract_config(4, face_size=64))
    items = list(inputs.iter_inputs([str(tmp_path / "crops")],
                                    extensions=inputs.IMAGE_EXTENSIONS))
    assert [Path(i.path).name for i in items] == ["broken.png", "face0.jpg", "face1.jpg", "face2.jpg"]
    recs = {Path(r["video"]).name: r for r in pipeline.iter_detect(items, ctx)}
    for p in paths:
        r = recs[p.name]
        assert r["status"] == "ok" and r["n_faces"] == 1 and r["label"] in ("FAKE", "REAL")
        assert r["p_fake"] == pytest.approx(want[p.name], abs=1e-6)
        assert r["meta"] == {"width": 40, "height": 40, "crop": True}
    assert recs["broken.png"]["status"] == "error"
    assert "not a readable image" in recs["broken.png"]["error"]


def test_cli_crops_flag_walks_images_and_reaches_the_context(tmp_path, capsys, cli_ctx):
    _write_crops(tmp_path / "crops", n=2)
    code, out = run_cli([str(tmp_path / "crops"), "--crops"], capsys)
    assert code == 0 and cli_ctx["crops"] is True
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(r["video"]).name for r in rows] == ["face0.jpg", "face1.jpg"]
    assert all(r["n_faces"] == "1" and r["status"] == "ok" for r in rows)
    code, out = run_cli([str(tmp_path / "crops")], capsys)  # without --crops: videos only
    assert code == 2 and out == ""  # images are no videos: nothing to score


def test_a_stacker_over_a_frame_and_a_temporal_model(tmp_path):
    pytest.importorskip("tensorflow")
    pd = pytest.importorskip("pandas")
    import keras

    from dfd.evaluation import stacking
    from dfd.evaluation.stacker import build_features
    from dfd.inference.scorers import ModelLoadError, StackScorer, load_scorer
    from tests.test_temporal_model import FACE, build

    keras.utils.set_random_seed(5)
    build(clip_len=4, dropout=0.0).save(tmp_path / "clip.keras")
    clip = load_scorer(str(tmp_path / "clip.keras"), name="lstm")
    # fit on tables shaped like dfd predict's: a frame table for "meso", a video table for "lstm"
    rng = np.random.default_rng(6)
    ids = [f"v{i}" for i in range(30)]
    y = np.arange(30) % 2
    frames = pd.DataFrame({"video_id": np.repeat(ids, 3), "track": 0,
                           "frame_index": np.tile([0, 1, 2], 30),
                           "p_fake": np.clip(np.repeat(y, 3) * 0.3 + rng.random(90) * 0.6, 0, 1)})
    videos = pd.DataFrame({"video_id": ids, "label": y, "status": "ok",
                           "p_fake": np.clip(y * 0.2 + rng.random(30) * 0.7, 0, 1)})
    stacker = stacking.fit(build_features({"meso": frames, "lstm": videos}),
                          pd.Series(y, index=ids))
    meso = BrightnessScorer()
    ss = StackScorer(stacker, {"meso": meso, "lstm": clip})
    faces = {0: rng.integers(0, 256, (9, FACE, FACE, 3), dtype=np.uint8),
             1: rng.integers(0, 256, (4, FACE, FACE, 3), dtype=np.uint8)}
    vf = SimpleNamespace(
        fps=25.0, frame_count=100, width=64, height=48, sampler="uniform:9", frames_searched=9,
        timings={}, tracks=[SimpleNamespace(track=t, faces=list(f), frame_indices=list(range(len(f))),
                                            boxes=[(0, 0, 10, 10)] * len(f),
                                            confidences=[0.99] * len(f)) for t, f in faces.items()])
    ctx = fake_ctx(scorer=ss)
    ctx.extract = lambda path, det, cfg: vf
    rec = pipeline.detect_video("x.mp4", ctx)
    assert rec["status"] == "ok", rec
    # by hand: meso's frame features over all faces, lstm's score = max over tracks of the
    # mean of the track's clip scores
    allf = np.concatenate([faces[0], faces[1]])
    b = meso(allf)
    lstm = max(clip.score_track(f)[0].mean() for f in faces.values())
    feats = pd.DataFrame({"meso:mean": [b.mean()], "meso:vote": [(b > 0.5).mean()],
                          "meso:max": [b.max()], "lstm": [lstm]})
    assert rec["p_fake"] == pytest.approx(float(stacker.predict_features(feats).iloc[0]), abs=1e-9)
    # a model of the wrong kind for its features is refused, naming both
    with pytest.raises(ModelLoadError, match="'lstm' to be a temporal"):
        StackScorer(stacker, {"meso": meso, "lstm": BrightnessScorer()})


class _BatchRecorder(BrightnessScorer):
    """Records the batch size of every call; fails on the calls listed in ``fail``."""

    def __init__(self, fail=()):
        super().__init__()
        self.sizes, self.fail = [], set(fail)

    def __call__(self, faces):
        self.sizes.append(len(faces))
        if len(self.sizes) in self.fail or "always" in self.fail:
            raise RuntimeError(f"call {len(self.sizes)} fails")
        return super().__call__(faces)


def _moving_clip(factory):
    def draw(frame, i):
        frame[:] = 40
        frame[40:80, 20 + 3 * i:60 + 3 * i] = 90 + 4 * i  # a brighter face in later frames
    return factory("moving.mp4", frames=24, size=(200, 120), draw=draw)


def test_faces_are_scored_while_the_video_is_decoded_with_the_same_scores(tiny_video_factory):
    import dataclasses

    path = _moving_clip(tiny_video_factory)
    early = fake_ctx(n_frames=12, scorer=_BatchRecorder())
    late = dataclasses.replace(early, scorer=_BatchRecorder(), score_while_decoding=False)
    a, b = pipeline.detect_video(path, early), pipeline.detect_video(path, late)
    assert a["status"] == b["status"] == "ok" and a["n_faces"] == b["n_faces"] == 12
    assert a["p_fake"] == b["p_fake"]
    assert [f["p_fake"] for f in a["frames"]] == [f["p_fake"] for f in b["frames"]]
    # early: batches of EARLY_BATCH (the last one padded to the same shape), nothing after
    assert early.scorer.sizes == [pipeline.EARLY_BATCH] * 2
    assert late.scorer.sizes == [12]
    # a folder: the same scores through iter_detect; the next video's extraction overlaps
    # this one's scoring, so only the last video (nothing after it) scores while decoding
    folder = fake_ctx(n_frames=12, scorer=_BatchRecorder())
    again = list(pipeline.iter_detect(iter([path, path, path]), folder))
    assert [r["p_fake"] for r in again] == [a["p_fake"]] * 3
    assert sorted(folder.scorer.sizes) == sorted([12, 12] + [pipeline.EARLY_BATCH] * 2)
    alone = fake_ctx(n_frames=12, scorer=_BatchRecorder())
    assert [r["p_fake"] for r in pipeline.iter_detect([path], alone)] == [a["p_fake"]]
    assert alone.scorer.sizes == [pipeline.EARLY_BATCH] * 2
    # an early score counts only for the very crop it was given: another crop of that frame
    # (a restarted sampler, another alignment) is scored again
    faces = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20)])
    early_scores = {5: (faces[0], 0.25), 9: (faces[1] + 1, 0.75)}
    known = pipeline._known_scores(early_scores, faces, np.array([5, 9]))
    assert known[0] == 0.25 and np.isnan(known[1])


def test_early_faces_are_scored_as_they_come_on_tensorflow_lite(tiny_video_factory):
    import dataclasses
    import threading
    from types import SimpleNamespace

    class Lite(_BatchRecorder):  # a ModelScorer whose model runs on the interpreter
        scorer = SimpleNamespace(runtime="tflite")

    path = _moving_clip(tiny_video_factory)
    lite = fake_ctx(n_frames=12, scorer=Lite())
    late = dataclasses.replace(lite, scorer=Lite(), score_while_decoding=False)
    a, b = pipeline.detect_video(path, lite), pipeline.detect_video(path, late)
    assert a["status"] == b["status"] == "ok" and a["n_faces"] == 12
    assert [f["p_fake"] for f in a["frames"]] == [f["p_fake"] for f in b["frames"]]
    assert sum(lite.scorer.sizes) == 12 and max(lite.scorer.sizes) <= pipeline.EARLY_BATCH
    assert pipeline.EarlyScores(_BatchRecorder()).finish() == {}  # not greedy: padded batches
    # what queued while a batch was scored is scored together next, unpadded
    entered, gate = threading.Event(), threading.Event()

    class Slow(_BatchRecorder):
        def __call__(self, faces):
            if not self.sizes:
                entered.set()
                gate.wait(10)
            return super().__call__(faces)

    early = pipeline.EarlyScores(Slow(), greedy=True)
    faces = [np.full((4, 4, 3), 10 * i, np.uint8) for i in range(6)]
    early.add(0, faces[0])
    assert entered.wait(10)
    for i in range(1, 6):
        early.add(i, faces[i])
    gate.set()
    got = early.finish()
    assert early.scorer.sizes == [1, 5] and sorted(got) == list(range(6))
    for i, (face, _) in got.items():
        assert face is faces[i]


def test_the_scoring_thread_ends_when_the_extraction_fails(tiny_video_factory, tmp_path):
    import threading

    def running():
        return [t for t in threading.enumerate() if t.name == "dfd-early-score"]

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    ctx = fake_ctx(n_frames=12, scorer=_BatchRecorder())
    rec = pipeline.detect_video(bad, ctx)
    assert rec["status"] == "error" and not running() and ctx.scorer.sizes == []
    dark = tiny_video_factory("dark.mp4", frames=12, size=(160, 120))
    nobody = fake_ctx(n_frames=4, detector_fn=lambda f, i: [], scorer=_BatchRecorder())
    assert pipeline.detect_video(dark, nobody)["status"] == "no_face" and not running()


def test_a_failed_early_batch_is_scored_again_and_a_failing_model_is_an_error_row(
        tiny_video_factory):
    path = _moving_clip(tiny_video_factory)
    want = pipeline.detect_video(path, fake_ctx(n_frames=12))
    once = fake_ctx(n_frames=12, scorer=_BatchRecorder(fail={1}))
    got = pipeline.detect_video(path, once)
    assert got["status"] == "ok" and got["p_fake"] == want["p_fake"]
    assert once.scorer.sizes == [pipeline.EARLY_BATCH] * 2 + [pipeline.EARLY_BATCH]  # redone
    broken = pipeline.detect_video(path, fake_ctx(n_frames=12, scorer=_BatchRecorder({"always"})))
    assert broken["status"] == "error" and "RuntimeError" in broken["error"]
    assert np.isnan(broken["p_fake"])

    class TwoPerFace(_BatchRecorder):  # e.g. a softmax [N, 2]: never taken for N scores
        def __call__(self, faces):
            return np.repeat(super().__call__(faces), 2)

    two = fake_ctx(n_frames=12, scorer=TwoPerFace())
    wrong = pipeline.detect_video(path, two)
    assert wrong["status"] == "error" and "returned (24,) scores for 12 faces" in wrong["error"]
    assert two.scorer.sizes == [pipeline.EARLY_BATCH] * 2 + [12]


def test_warm_up_traces_both_batch_shapes():
    ctx = fake_ctx(scorer=_BatchRecorder())
    pipeline.warm_up(ctx, face_size=32)
    assert ctx.scorer.sizes == [1, pipeline.EARLY_BATCH]
