"""Frame models through TensorFlow Lite (dfd.inference.lite): the same scores as Keras, a cache
keyed by the weights, and a clear refusal for what cannot run there."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from dfd.inference import lite  # noqa: E402
from dfd.inference.loading import load_any  # noqa: E402
from dfd.inference.scorers import ModelLoadError, load_scorer  # noqa: E402


def tiny_model(side=16, seed=0, name="tiny"):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((side, side, 3), name="faces")
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_fake")(x)
    return keras.Model(inp, out, name=name)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(lite.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache" / "lite"


def faces(n, side=16, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_the_converted_model_scores_as_keras_does_at_any_batch_length(cache):
    model = tiny_model()
    lm = lite.lite_model(model)
    assert lm.shape == (16, 16, 3)
    for n in (5, 1, 3, 5):  # the interpreter is resized back and forth
        x = faces(n, seed=n)
        want = model.predict_on_batch(x.astype(np.float32))
        got = lm(x)
        assert got.shape == (n, 1)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert lm(faces(0)).shape == (0, 1)
    with pytest.raises(ValueError, match=r"takes uint8 faces \[N, 16, 16, 3\], got uint8 \(2, 8, 8, 3\)"):
        lm(faces(2, side=8))
    with pytest.raises(ValueError, match=r"got float32 \(2, 16, 16, 3\)"):
        lm(faces(2).astype(np.float32))
    # the Scorer rounds other numbers to uint8 (one place), then calls the converted model
    scorer = load_any(model, runtime="tflite")
    np.testing.assert_allclose(scorer(faces(2).astype(np.float32) + 0.3), scorer(faces(2)), atol=0)


def test_the_conversion_is_cached_by_the_weights_and_checked(cache, monkeypatch):
    model = tiny_model()
    first = lite.lite_model(model)
    files = sorted(p.suffix for p in cache.iterdir())
    assert files == [".json", ".tflite"]
    info = json.loads(next(cache.glob("*.json")).read_text())
    assert info["max_abs_diff"] <= lite.TOLERANCE and info["input"] == [16, 16, 3]
    assert info["fingerprint"] == lite.fingerprint(model)

    def no_conversion(m):
        raise AssertionError("converted again")

    monkeypatch.setattr(lite, "convert", no_conversion)
    again = lite.lite_model(model)
    np.testing.assert_array_equal(again(faces(4)), first(faces(4)))
    # other weights, same architecture: another fingerprint, converted (here: refused to)
    other = tiny_model(seed=1)
    assert lite.fingerprint(other) != lite.fingerprint(model)
    with pytest.raises(AssertionError, match="converted again"):
        lite.lite_model(other)


def test_an_unreadable_cache_file_is_converted_again(cache, caplog):
    model = tiny_model()
    lite.lite_model(model)
    blob = next(cache.glob("*.tflite"))
    blob.write_bytes(b"not a flatbuffer")
    lm = lite.lite_model(model)
    assert "unusable" in caplog.text and "converting again" in caplog.text
    np.testing.assert_allclose(lm(faces(3)), model.predict_on_batch(faces(3).astype(np.float32)),
                               atol=1e-5)
    assert blob.read_bytes() == lm.blob


def test_a_cache_that_cannot_be_written_keeps_the_model_in_memory(tmp_path, monkeypatch, caplog):
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv(lite.ENV_CACHE, str(tmp_path / "file"))
    lm = lite.lite_model(tiny_model())
    assert lm(faces(2)).shape == (2, 1)
    assert "cannot keep the TensorFlow Lite model" in caplog.text and lite.ENV_CACHE in caplog.text


def test_models_that_cannot_run_there_are_named_with_the_reason(cache, caplog):
    caplog.set_level(logging.INFO, logger="dfd.inference.loading")
    a, b = keras.Input((8, 8, 3)), keras.Input((4,))
    two_inputs = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(a), b])))
    free = keras.Input((None, None, 3))
    any_size = keras.Model(free, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(free)))
    c = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(c)
    two_outputs = keras.Model(c, [keras.layers.Dense(1)(pooled), keras.layers.Dense(1)(pooled)])
    for model, why in ((two_inputs, "takes 2 inputs"), (any_size, r"faces of shape \[None, None, None, 3\]"),
                       (two_outputs, "has 2 outputs")):
        with pytest.raises(lite.LiteUnavailable, match=why):
            lite.lite_model(model)
        with pytest.raises(ValueError, match="runtime 'tflite': .*" + why):
            load_any(model, runtime="tflite")
        caplog.clear()
        assert load_any(model, runtime="auto").runtime == "tensorflow"
        assert "runs on Keras" in caplog.text
    assert not cache.exists()


def test_a_conversion_that_scores_differently_is_refused_and_remembered(cache, monkeypatch,
                                                                       caplog):
    caplog.set_level(logging.INFO, logger="dfd.inference.loading")
    other = lite.convert(tiny_model(seed=5))  # another model's file, the same input
    monkeypatch.setattr(lite, "convert", lambda model: other)
    model = tiny_model()
    with pytest.raises(ValueError, match=r"differ from Keras by .* on the probe faces \(more than 0.0001\)"):
        load_any(model, runtime="tflite")
    assert not list(cache.glob("*.tflite"))

    def no_conversion(m):
        raise AssertionError("converted again")

    monkeypatch.setattr(lite, "convert", no_conversion)  # the refusal is remembered
    scorer = load_any(model, runtime="auto")
    assert scorer.runtime == "tensorflow" and "tiny runs on Keras: TensorFlow Lite scores differ" in caplog.text
    assert "delete it to try again" in caplog.text


def test_score_gap_sees_differences_in_saturated_scores():
    assert lite.score_gap([0.5, 0.2], [0.50001, 0.2]) <= lite.TOLERANCE
    assert lite.score_gap([0.5], [0.6]) == pytest.approx(0.1)
    # 1e-30 against 1e-20: 1e-20 apart as probabilities, 23 apart in log-odds
    assert lite.score_gap([1e-30], [1e-20]) > 100 * lite.TOLERANCE
    assert lite.score_gap([1 - 1e-9], [1 - 1e-12]) > lite.TOLERANCE
    assert lite.score_gap([1e-30], [1e-30 * (1 + 1e-7)]) <= lite.TOLERANCE


def test_a_changed_cache_file_is_not_trusted(cache, caplog):
    model = tiny_model()
    lite.lite_model(model)
    blob = next(cache.glob("*.tflite"))
    info = next(cache.glob("*.json"))
    assert f"keras{keras.__version__}" in blob.name and f"tf{tf.__version__}" in blob.name
    good = blob.read_bytes()
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit
    lm = lite.lite_model(model)
    assert "its sha256 is not the one recorded" in caplog.text
    assert blob.read_bytes() == good and lm.blob == good
    caplog.clear()
    recorded = json.loads(info.read_text())
    recorded["probe_scores"][0][0] += 0.01  # a file that no longer scores as it did
    info.write_text(json.dumps(recorded))
    lite.lite_model(model)
    assert "its scores on the probe faces are not the ones recorded" in caplog.text


def test_conversion_failures_fall_back_under_auto_and_fail_under_tflite(cache, monkeypatch, caplog):
    def broken(model, name=None):
        raise TypeError("trace failed")

    monkeypatch.setattr(lite, "lite_model", broken)
    model = tiny_model()
    assert load_any(model, runtime="auto").runtime == "tensorflow"
    assert "converting it to TensorFlow Lite failed (TypeError: trace failed)" in caplog.text
    with pytest.raises(ValueError, match="runtime 'tflite': TypeError: trace failed"):
        load_any(model, runtime="tflite")


def test_a_mixed_precision_model_is_refused_at_once(cache):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(lite.LiteUnavailable, match=r"float16.*mixed precision"):
        lite.lite_model(model)
    assert load_any(model, runtime="auto").runtime == "tensorflow"


def test_a_uint8_input_and_a_flat_output_score_as_keras_does(cache):
    inp = keras.Input((12, 12, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(2, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Reshape(())(keras.layers.Dense(1, activation="sigmoid")(x))
    model = keras.Model(inp, out)
    lm = lite.lite_model(model)
    x = faces(4, side=12)
    got, want = lm(x), model.predict_on_batch(x)
    assert got.shape == want.shape == (4,)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_load_scorer_runs_a_model_file_through_tflite_by_default(cache, tmp_path):
    model = tiny_model()
    model.save(tmp_path / "m.keras")
    auto = load_scorer(str(tmp_path / "m.keras"))
    plain = load_scorer(str(tmp_path / "m.keras"), runtime="keras")
    assert auto.scorer.runtime == "tflite" and plain.scorer.runtime == "tensorflow"
    assert auto.scorer.model is not None  # Grad-CAM still has the Keras model
    x = faces(7, seed=3)
    np.testing.assert_allclose(auto(x), plain(x), atol=1e-5)
    with pytest.raises(ModelLoadError, match="runtime must be one of .*got 'onnx'"):
        load_scorer(str(tmp_path / "m.keras"), runtime="onnx")


def test_threads_share_one_interpreter_safely(cache):
    model = tiny_model()
    lm = lite.lite_model(model)
    batches = [faces(1 + i % 4, seed=i) for i in range(24)]
    want = [lm(b) for b in batches]
    got = [None] * len(batches)

    def work(k):
        for i in range(k, len(batches), 4):
            got[i] = lm(batches[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_the_interpreter_notice_does_not_reach_the_user(tmp_path):
    code = ("import sys; sys.path.insert(0, '.'); import numpy as np;"
            "from tests.test_lite import tiny_model; from dfd.inference import lite;"
            "lm = lite.lite_model(tiny_model()); print(lm(np.zeros((2, 16, 16, 3), np.uint8)).shape)")
    env = {**os.environ, lite.ENV_CACHE: str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert run.returncode == 0, run.stderr
    assert "(2, 1)" in run.stdout
    assert "XNNPACK" not in run.stderr and "deprecated" not in run.stderr
    from dfd_app.cli.main import TF_STARTUP_NOISE  # TensorFlow's import lines, not ours

    left = [ln for ln in run.stderr.splitlines()
            if ln.strip() and not any(n in ln for n in TF_STARTUP_NOISE)]
    assert not left, left


def test_the_shipped_default_scores_real_clips_the_same_on_both_runtimes(shared):
    """Issue 13's accuracy check for this lever: the same video scores (+-0.01 allowed; the
    runtimes agree to 1e-4) on DFDC clips, through `dfd detect`'s own pipeline."""
    import dataclasses

    from dfd_app.detect import pipeline

    clips = sorted(shared("data", "dfdc_videos").glob("*.mp4"))[:2]
    lite_ctx = pipeline.build_context(n_frames=8, uncertain="off")
    keras_ctx = dataclasses.replace(
        pipeline.build_context(n_frames=8, uncertain="off", runtime="keras"),
        detector=lite_ctx.detector)
    assert lite_ctx.runtime == "tflite" and keras_ctx.runtime == "tensorflow"
    for clip in clips:
        a, b = pipeline.detect_video(clip, lite_ctx), pipeline.detect_video(clip, keras_ctx)
        assert a["status"] == b["status"] == "ok" and a["n_faces"] == b["n_faces"] > 0
        assert abs(a["p_fake"] - b["p_fake"]) < 1e-4, (clip.name, a["p_fake"], b["p_fake"])


def test_auto_keeps_keras_where_a_gpu_is_visible(cache, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="dfd.inference.loading")
    monkeypatch.setattr(lite, "gpu_visible", lambda: True)
    model = tiny_model()
    assert load_any(model, runtime="auto").runtime == "tensorflow"
    assert "a GPU is visible" in caplog.text and not cache.exists()
    assert load_any(model, runtime="tflite").runtime == "tflite"  # asked for by name: CPU
