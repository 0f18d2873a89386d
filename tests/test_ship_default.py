"""tools/ship_default.py: the default is chosen on cross-source validation scores only, and the
shipped file and its preset round-trip."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfd import presets
from dfd.evaluation.compare import trained_on

TOOL = Path(__file__).resolve().parents[1] / "tools" / "ship_default.py"
DFDC, FFPP = "csv:dfdc_faces", "csv:ffpp_faces"


def _run(fakes, faces, split="train"):
    """What a run's preset records (``trained_on`` of its folder): the sources of its fakes,
    of all its faces, and the split they came from."""
    return {"fake_sources": list(fakes), "train_sources": list(faces), "train_split": split}


#: self-blended fakes of DFDC's real training faces; DFDC's fakes; both sources' fakes
SBI, ON_DFDC, ON_BOTH = _run([], [DFDC]), _run([DFDC], [DFDC]), _run([DFDC, FFPP], [DFDC, FFPP])


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("ship_default", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _videos(source, n, separation, seed, prefix):
    """A video score table: ``n`` REAL and ``n`` FAKE videos, FAKE shifted by ``separation``."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n)
    p = 1 / (1 + np.exp(-(rng.normal(size=2 * n) + separation * y)))
    return pd.DataFrame({"video_id": [f"{prefix}{i}" for i in range(2 * n)], "label": y,
                         "p_fake": p, "status": "ok", "source": source})


def _cache(out, name, dfdc_sep, ffpp_sep, seed, condition=""):
    """Write the score files the tool would compute (so no model is run): val = DFDC val and
    FF++ val videos, ffpp-train = FF++ train videos (``condition``: e.g. ``@h26440``)."""
    (out / "scores").mkdir(parents=True, exist_ok=True)
    val = pd.concat([_videos(DFDC, 60, dfdc_sep, seed, "d"),
                     _videos(FFPP, 8, ffpp_sep, seed + 1, "fv")])
    val.to_csv(out / "scores" / f"{name}-val{condition}.csv", index=False)
    _videos(FFPP, 30, ffpp_sep, seed + 2, "ft").to_csv(
        out / "scores" / f"{name}-ffpp-train{condition}.csv", index=False)
    both = pd.concat([val, pd.read_csv(out / "scores" / f"{name}-ffpp-train{condition}.csv")])
    return {s: roc_auc_score(t["label"], t["p_fake"]) for s, t in both.groupby("source")}


def test_the_default_is_chosen_on_sources_the_model_never_saw(tool, tmp_path):
    # "dfdc" is excellent on DFDC, whose fakes it trained on: that must not count
    truth = {"sbi": _cache(tmp_path, "sbi", 0.9, 0.9, 0),
             "dfdc": _cache(tmp_path, "dfdc", 4.0, 0.5, 10),
             "both": _cache(tmp_path, "both", 4.0, 4.0, 20)}
    trained = {"sbi": SBI, "dfdc": ON_DFDC, "both": ON_BOTH}
    # the shards do not exist: the cached validation scores are all the tool may read
    held = tool.Held(str(tmp_path / "no-shards"), tmp_path)
    name, table = tool.choose({n: f"{n}.keras" for n in truth}, trained, held, ("stored",))
    assert name == "sbi"
    assert list(table["model"]) == ["sbi", "dfdc"]  # "both" has no cross-source figure
    row = table.set_index("model")
    assert row.loc["sbi", DFDC] == pytest.approx(truth["sbi"][DFDC])
    assert row.loc["sbi", FFPP] == pytest.approx(truth["sbi"][FFPP])
    assert row.loc["sbi", "mean"] == pytest.approx((truth["sbi"][DFDC] + truth["sbi"][FFPP]) / 2)
    assert np.isnan(row.loc["dfdc", DFDC]) and row.loc["dfdc", "mean"] == pytest.approx(
        truth["dfdc"][FFPP])
    assert row.loc["sbi", f"n {FFPP}"] == 76  # FF++'s val and train groups together


def test_a_candidate_that_trained_on_ffpp_real_faces_moves_everyone_to_ffpp_val(tool, tmp_path):
    # "ffreal" made its self-blended fakes from the real faces of FF++'s train groups: FF++
    # stays cross-source for it (it never saw an FF++ fake), but those groups cannot judge it,
    # and every candidate is judged on the same videos
    _cache(tmp_path, "sbi", 0.9, 0.9, 0)
    _cache(tmp_path, "ffreal", 0.9, 3.0, 30)
    trained = {"sbi": SBI, "ffreal": _run([], [DFDC, FFPP])}
    assert tool.selection_parts({"sbi": trained["sbi"]}) == tool.WITH_FFPP_TRAIN
    assert tool.selection_parts(trained) == tool.VAL_ONLY
    # a model that saw FF++'s fakes is not judged on FF++: it moves nobody
    assert tool.selection_parts({"sbi": trained["sbi"], "both": ON_BOTH}) == tool.WITH_FFPP_TRAIN
    held = tool.Held(str(tmp_path / "no-shards"), tmp_path)
    name, table = tool.choose({"sbi": "a.keras", "ffreal": "b.keras"}, trained, held, ("stored",))
    row = table.set_index("model")
    assert name == "ffreal" and (row[f"n {FFPP}"] == 16).all()  # FF++'s val videos only
    for model in ("sbi", "ffreal"):
        val = pd.read_csv(tmp_path / "scores" / f"{model}-val.csv")
        ff = val[val["source"] == FFPP]
        assert row.loc[model, FFPP] == pytest.approx(roc_auc_score(ff["label"], ff["p_fake"]))
    cross = tool.upload_scores("b.keras", "ffreal", held, [], ("stored",), tool.VAL_ONLY)
    assert not cross["video_id"].str.startswith("ft").any() and len(cross) == 120 + 16
    # its test check leaves out "all of FF++" (it trained on some of those faces)
    for part in ("test", "ffpp-all"):
        pd.concat([_videos(DFDC, 10, 2.0, 7, "t"), _videos(FFPP, 10, 2.0, 8, "u")]).to_csv(
            tmp_path / "scores" / f"ffreal-{part}.csv", index=False)
    checks = tool.verdict_check("b.keras", "ffreal", trained["ffreal"], held, ("stored",),
                                {"low": 0.3, "high": 0.7})
    assert set(checks["test_set"]) == {"test"}
    assert set(checks["kind"]) == {"cross-source"}


def test_a_tie_goes_to_the_candidate_given_first(tool, tmp_path):
    for name in ("b", "a", "c"):  # the same scores for all three
        _cache(tmp_path, name, 1.0, 1.0, 0)
    held = tool.Held(str(tmp_path / "no-shards"), tmp_path)
    for order in (("b", "a", "c"), ("c", "a", "b"), ("a", "c", "b")):
        name, table = tool.choose({n: f"{n}.keras" for n in order}, {n: SBI for n in order},
                                  held, ("stored",))
        assert name == order[0] and list(table["model"]) == list(order)


def test_the_model_shipped_now_stays_unless_beaten_by_more_than_the_margin(tool, tmp_path):
    _cache(tmp_path, "shipped", 1.0, 1.0, 0)
    _cache(tmp_path, "challenger", 1.1, 1.1, 0)
    held = tool.Held("no-shards", tmp_path)
    models = {"shipped": "a.keras", "challenger": "b.keras"}
    name, table = tool.choose(models, {n: SBI for n in models}, held, ("stored",))
    means = table.set_index("model")["mean"]
    lead = means["challenger"] - means["shipped"]
    assert name == "challenger" and lead > 0
    for margin, chosen in ((lead * 2, "shipped"), (lead / 2, "challenger")):
        name, again = tool.choose(models, {n: SBI for n in models}, held, ("stored",), margin)
        assert name == chosen and again.equals(table)  # the table is the same either way


def test_a_candidate_that_may_have_trained_on_its_validation_faces_is_refused(tool, tmp_path):
    _cache(tmp_path, "x", 1.0, 1.0, 0)
    held = tool.Held("no-shards", tmp_path)
    # given as text, a model's real faces are unknown: it cannot be judged
    with pytest.raises(SystemExit, match="x: the faces it trained on are unknown.*run folder"):
        tool.choose({"x": "m.keras"}, {"x": trained_on("none")}, held, ("stored",))
    # trained on every split (dfd train's default): its validation videos are training faces
    with pytest.raises(SystemExit, match="x trained on faces of DFDC from split 'all'"):
        tool.choose({"x": "m.keras"}, {"x": _run([], [DFDC], "all")}, held, ("stored",))
    # judged only where it trained on nothing: fine whatever its split
    assert tool.choose({"x": "m.keras"}, {"x": _run([DFDC], [DFDC], "all")}, held,
                       ("stored",))[0] == "x"
    # a run folder gives what it needs
    presets.write_preset(presets.ModelPreset(name="r", extra={
        "train_sources": [DFDC], "fake_sources": [], "train_split": "train"}), tmp_path / "run")
    assert tool.choose({"x": "m.keras"}, {"x": trained_on(tmp_path / "run")}, held,
                       ("stored",))[0] == "x"
    # a reference given as text: "all of FF++" follows its fakes (nothing else is known)
    assert not tool.saw_ffpp_faces(trained_on("dfdc")) and tool.saw_ffpp_faces(trained_on("ffpp"))
    assert tool.saw_ffpp_faces(_run([], [DFDC, FFPP])) and not tool.saw_ffpp_faces(SBI)


def test_nothing_to_choose_from_is_an_error(tool, tmp_path):
    _cache(tmp_path, "both", 1.0, 1.0, 0)
    with pytest.raises(SystemExit, match="never trained on"):
        tool.choose({"both": "m.keras"}, {"both": ON_BOTH},
                    tool.Held("x", tmp_path), ("stored",))


def test_a_model_that_fails_once_its_faces_are_recoded_is_not_chosen(tool, tmp_path):
    # "sharp" is the better one on the faces as stored and at chance once they are re-coded
    sharp = {"stored": _cache(tmp_path, "sharp", 1.5, 1.5, 0),
             "h264:40": _cache(tmp_path, "sharp", 0.0, 0.0, 1, "@h26440")}
    sturdy = {"stored": _cache(tmp_path, "sturdy", 1.0, 1.0, 2),
              "h264:40": _cache(tmp_path, "sturdy", 0.9, 0.9, 3, "@h26440")}
    trained = {"sharp": SBI, "sturdy": SBI}
    models = {"sharp": "a.keras", "sturdy": "b.keras"}
    held = tool.Held("no-shards", tmp_path)
    assert all(sharp["stored"][s] > sturdy["stored"][s] for s in (DFDC, FFPP))
    assert tool.choose(models, trained, held, ("stored",))[0] == "sharp"
    name, table = tool.choose(models, trained, held, ("stored", "h264:40"))
    assert name == "sturdy"
    row = table.set_index("model").loc["sturdy"]
    for s in (DFDC, FFPP):
        assert row[f"{s} h264:40"] == pytest.approx(sturdy["h264:40"][s])
        assert row[s] == pytest.approx((sturdy["stored"][s] + sturdy["h264:40"][s]) / 2)


def _tiny_run(tool, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A tiny saved model as a run's ``last.keras``, and the tool's assets folder moved to
    ``tmp_path/assets``: ``(model_path, assets)``."""
    from mesonet_tf import Meso4

    assets = tmp_path / "assets"
    assets.mkdir()
    monkeypatch.setattr(tool, "ASSETS_DIR", assets)
    model_path = tmp_path / "run" / "last.keras"
    model_path.parent.mkdir()
    Meso4(input_shape=(32, 32, 3)).save(model_path)
    return model_path, assets


def test_shipped_default_and_its_preset_round_trip(tool, tmp_path, monkeypatch):
    import keras

    model_path, assets = _tiny_run(tool, tmp_path, monkeypatch)
    run_preset = presets.ModelPreset(
        name="meso4", architecture="meso4", kind="model", face_size=32,
        extra={"train_sources": [DFDC], "fake_sources": [], "fakes": "sbi", "junk": 1})
    cross = pd.concat([_videos(DFDC, 40, 1.5, 0, "d"), _videos(FFPP, 20, 1.5, 1, "f")],
                      ignore_index=True)
    preset = tool.ship(str(model_path), "tiny", cross, run_preset, tmp_path / "work")

    saved = json.loads((assets / "dfd_default.json").read_text())
    again = presets.ModelPreset.from_dict(saved)
    assert again == preset and again.name == "dfd_default" and again.file == "dfd_default.keras"
    assert again.sha256 == presets.sha256_file(assets / "dfd_default.keras")
    assert again.face_margin == 1.06 and again.face_size == 32 and again.outputs == "p_fake"
    assert again.extra == {"train_sources": [DFDC], "fake_sources": [], "fakes": "sbi",
                           "trained_as": "tiny"}
    assert again.calibration["n"] == 120 and "DFDC 80, FaceForensics++ 40" in \
        again.calibration["fitted_on"]
    band = again.uncertain
    assert band["n"] == 120 and band["n_fake"] == 60 and band["min_precision"] == 0.8
    assert "never saw" in band["fitted_on"]
    # the shipped file loads without our code and carries the calibration in its head
    model = keras.models.load_model(assets / "dfd_default.keras", compile=False)
    faces = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    p = model.predict(faces, verbose=0).ravel()
    raw = keras.models.load_model(model_path, compile=False).predict(faces, verbose=0).ravel()
    logit = np.log(raw / (1 - raw))
    a, b = again.calibration["a"], again.calibration["b"]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(a * logit + b))), rtol=1e-4, atol=1e-6)
    # shipping the same model again keeps the file's bytes (no new blob for the same weights);
    # another calibration is another model
    copies, copyfile = [], shutil.copyfile
    monkeypatch.setattr(tool.shutil, "copyfile", lambda *a: copies.append(a) or copyfile(*a))
    tool.ship(str(model_path), "tiny", cross, run_preset, tmp_path / "work")
    assert presets.sha256_file(assets / "dfd_default.keras") == again.sha256 and not copies
    tool.ship(str(model_path), "tiny", cross.assign(p_fake=cross["p_fake"] ** 2), run_preset,
              tmp_path / "work")
    assert presets.sha256_file(assets / "dfd_default.keras") != again.sha256 and copies


def test_the_band_is_fitted_on_every_condition_and_checked_on_the_tests(tool, tmp_path,
                                                                       monkeypatch):
    model_path, _ = _tiny_run(tool, tmp_path, monkeypatch)
    work = tmp_path / "work"
    _cache(work, "tiny", 2.0, 2.0, 0)
    _cache(work, "tiny", 1.5, 1.5, 1, "@h26440")
    held = tool.Held("no-shards", work)
    cross = tool.upload_scores(str(model_path), "tiny", held, [], ("stored", "h264:40"))
    assert len(cross) == 2 * (120 + 16 + 60) and set(cross["condition"]) == {"stored", "h264:40"}
    preset = tool.ship(str(model_path), "tiny", cross, None, work)
    band = preset.uncertain
    assert set(band["group_precision"]) == {f"{s}@{c}" for s in (DFDC, FFPP)
                                            for c in ("stored", "h264:40")}
    for got in band["group_precision"].values():
        for side in ("real", "fake"):
            assert got[side] is None or got[side][1] >= 0.8
    assert any(got[side] for got in band["group_precision"].values() for side in ("real", "fake"))
    assert band["n"] == len(cross) and preset.calibration["n"] == len(cross)
    assert band["n_videos"] == len(cross) // 2  # each video once, for the bound
    assert "DFDC 120, FaceForensics++ 76; each under `stored`, `h264:40`" in band["fitted_on"]
    # the check on test videos: the band's verdicts and their precision per source, condition
    for part, sep in (("test", 2.0), ("ffpp-all", 2.0)):
        for cond, shift in (("", sep), ("@h26440", 0.0)):
            src = [(DFDC, "t"), (FFPP, "u")] if part == "test" else [(FFPP, "a")]
            pd.concat([_videos(s, 20, shift, 7, pre) for s, pre in src]).to_csv(
                work / "scores" / f"dfd_default.x-{part}{cond}.csv", index=False)
    checks = tool.verdict_check("m.keras", "dfd_default.x", SBI, held,
                                ("stored", "h264:40"), {"low": 0.3, "high": 0.7})
    # the test splits only: all of FF++ holds the videos that chose the band
    assert len(checks) == 4 and set(checks["test_set"]) == {"test"}
    row = checks[(checks["source"] == FFPP) & (checks["condition"] == "h264:40")].iloc[0]
    table = pd.read_csv(work / "scores" / "dfd_default.x-test@h26440.csv")
    table = table[table["source"] == FFPP]
    fake = table["p_fake"] >= 0.7
    assert row["fake"] == [int(fake.sum()), pytest.approx(table["label"][fake].mean())]
    decided = (fake | (table["p_fake"] < 0.3)).mean()
    assert row["decided"] == pytest.approx(decided) and row["kind"] == "cross-source"


def test_the_card_shows_each_condition_of_the_choice_and_of_the_tests(tool, tmp_path):
    for name, seed in (("a", 0), ("b", 4)):
        _cache(tmp_path, name, 1.0, 1.0, seed)
        _cache(tmp_path, name, 0.2, 0.2, seed + 1, "@h26440")
    conditions = ("stored", "h264:40")
    name, selection = tool.choose({"a": "a.keras", "b": "b.keras"},
                                  {"a": SBI, "b": SBI},
                                  tool.Held("no-shards", tmp_path), conditions)
    row = selection.set_index("model").loc[name]
    fig = {"model": "dfd_default", "source": FFPP, "kind": "cross-source", "n": 40, "n_fake": 20,
           "roc_auc": 0.7, "roc_auc_95ci": "[0.500, 0.900]"}
    figures = {"per_source": pd.DataFrame([fig]),
               "conditions": pd.DataFrame([dict(fig, condition=c, roc_auc=v)
                                           for c, v in zip(conditions, (0.7, 0.55))])}
    preset = presets.ModelPreset(
        name="dfd_default", architecture="efficientnet_lite0", kind="model", face_size=192,
        face_margin=1.06, calibration={"a": 0.5, "b": 0.1, "n": 10, "fitted_on": "x"},
        uncertain={"low": 0.3, "high": 0.7, "n": 10, "n_fake": 5, "min_precision": 0.8,
                   "coverage": 0.2}, extra={"train_sources": [DFDC], "fakes": "sbi"})
    figures["verdicts"] = pd.DataFrame([{"test_set": "test", "source": FFPP,
                                         "condition": "h264:40", "n": 40, "real": None,
                                         "fake": [7, 0.857], "decided": 7 / 40}])
    preset = preset.replace(uncertain=dict(preset.uncertain, group_precision={
        f"{DFDC}@h264:40": {"n": 1800, "real": [4, 0.75], "fake": None}}))
    text = tool.card(name, preset, selection, figures, "", None, "", conditions)
    assert "| FaceForensics++ test split | `h264:40` | 40 | none | 7 (0.86) | 18% |" in text
    assert "*all 280*" not in text  # no all-FF++ row: no note
    all_ff = dict(fig, model="dfd_default (all FF++)", n=280, n_fake=140)
    with_all = tool.card(name, preset, selection, dict(
        figures, per_source=pd.DataFrame([fig, all_ff])), "", None, "", conditions)
    assert (f"The {int(row[f'n {FFPP}'])} videos of its `train` and `val` identity groups "
            "among them chose the default") in with_all
    assert "* DFDC, `h264:40` (1800 videos): REAL 4 (0.75)" in text
    assert "each video under each of 2 conditions" in text
    assert "one-sided" not in text  # a band chosen by point estimate says nothing of a bound
    bound = preset.replace(uncertain=dict(preset.uncertain, confidence=0.95))
    assert "at its one-sided 95% lower confidence bound" in tool.card(
        name, bound, selection, figures, "", None, "", conditions)
    assert "mean over 2 conditions: `stored`, `h264:40`" in text
    assert "--margin" not in text
    kept = tool.card(name, preset, selection, figures, "", None, "", conditions, margin=0.01,
                     incumbent="old")
    assert "`old`, the default before, stays the default unless another candidate beats its " \
           "mean by more than 0.01" in kept
    each = f"({row[f'{FFPP} stored']:.3f} / {row[f'{FFPP} h264:40']:.3f})"
    assert f"| **{name}** | none | " in text and each in text
    assert "| dfd_default | FaceForensics++ test split | cross-source | `h264:40` | 0.550 |" in text
    plain = tool.card(name, preset, selection, figures, "", None, "", ("stored",))
    assert "Under upload conditions" not in plain and "conditions:" not in plain
    assert "FF++: the `train` and `val` identity groups" in text
    val_only = tool.card(name, preset, selection, figures, "", None, "", conditions,
                         tool.VAL_ONLY)
    assert "FF++: the `val` identity groups only" in val_only and "`train` and" not in val_only


def test_the_card_says_how_a_fine_tuned_run_trained(tool, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    base = {"model": "efficientnet_lite0", "epochs": 8, "steps_per_epoch": 200, "batch_size": 32,
            "optimizer": "adam", "learning_rate": 3e-4, "loss": "bce", "seed": 0,
            "model_kwargs": {"weights": "imagenet"}}
    (first / "config.json").write_text(json.dumps({"config": base}))
    (first / "last.keras").write_bytes(b"")
    again = dict(base, learning_rate=1e-4, model_kwargs={"weights": str(first / "last.keras")})
    text = tool.training(again)
    assert text.startswith("fine-tuned from the model of run `first` for 8 epochs x 200 steps "
                           "of 32, adam lr 0.0001")
    assert "(that run: initialised from imagenet weights, 8 epochs x 200 steps of 32, adam lr " \
           "0.0003, loss bce, seed 0)" in text
    assert tool.training(dict(base, model_kwargs={})).startswith("initialised from random")
    averaged = tool.training(dict(base, epochs=16, steps_per_epoch=100, average_from=9))
    assert averaged.endswith("seed 0, its weights averaged over the ends of epochs 9-16 "
                             "(stochastic weight averaging, `--average-from 9`)")
    phased = tool.training(dict(base, average_from=2, phases=[
        {"epochs": 1, "learning_rate": 1e-3, "trainable_backbone": False},
        {"epochs": 3, "learning_rate": 1e-4}]))
    assert "averaged over the ends of epochs 2-4" in phased  # the phases' epochs, not `epochs`
    sam = dict(base, epochs=16, steps_per_epoch=100, average_from=9, sam_rho=0.05)
    assert "seed 0, sharpness-aware minimization (`--sam-rho 0.05`), its weights averaged " \
           "over the ends of epochs 9-16" in tool.training(sam)
    last = tool.training(sam, unaveraged=True)
    assert last.endswith("the weights at the end of its last epoch (`unaveraged.keras`; the "
                         "run's `last.keras` is their mean over epochs 9-16, not this model)")
    assert "sharpness-aware" not in tool.training(dict(base, sam_rho=0.0))
    # the self-blending settings that differ from the defaults, as the flag that sets them
    sbi = dict(base, fakes="sbi", sbi={"keep_range": True, "sharpness": [-1.0, 1.5]})
    assert ", self-blended fakes with `--sbi '{\"keep_range\": true}'`" in tool.training(sbi)
    assert "--sbi" not in tool.training(dict(sbi, sbi={"sharpness": [-1.0, 1.5]}))
    assert "--sbi" not in tool.training(dict(sbi, fakes="real"))


def test_the_band_is_chosen_on_the_videos_as_the_shipped_file_scores_them(tool, tmp_path,
                                                                          monkeypatch):
    # the shipped file calibrates each frame, so its video scores (means of calibrated
    # frames) are not the calibrated means the calibration was fitted on: the band is chosen
    # on what rescore gives for the shipped file
    model_path, assets = _tiny_run(tool, tmp_path, monkeypatch)
    cross = pd.concat([_videos(DFDC, 40, 1.5, 0, "d"), _videos(FFPP, 20, 1.5, 1, "f")],
                      ignore_index=True)
    asked = []

    def rescore(path, key):
        # the file scored is the shipped model, with the shipped preset (its framing and
        # calibration) beside it: not a registry entry of the default shipped before
        from dfd.inference.loading import preset_of

        asked.append((path, key, preset_of(path)))
        return pd.concat([_videos(DFDC, 100, 4.0, 3, "d"), _videos(FFPP, 100, 4.0, 4, "f")],
                         ignore_index=True)

    preset = tool.ship(str(model_path), "tiny", cross, None, tmp_path / "work", rescore=rescore)
    digest = presets.sha256_file(assets / "dfd_default.keras")
    (path, key, seen), = asked
    assert key == f"dfd_default.tiny.{digest[:8]}" and presets.sha256_file(path) == digest
    assert seen.calibration == preset.calibration and seen.face_margin == preset.face_margin
    assert seen.sha256 == digest and seen.uncertain is None
    band = preset.uncertain
    assert band["n"] == 400 and band["n_videos"] == 400  # the rescored table, not cross (120)
    assert band["high"] is not None and band["fake_precision"] >= 0.8
    assert band["fitted_on"].endswith("as the shipped file scores them")
    assert preset.calibration["n"] == 120  # the calibration is still fitted on cross


def test_a_new_card_keeps_the_other_models_sections(tool):
    old = ("# Model card: the shipped models\n\nGenerated by it.\n\n"
           "## `dfd_default.keras`: efficientnet_lite0 (old)\n\nold figures\n\n"
           "## The earlier MesoNets (`dfdc_meso4`)\n\nkept text\n### Results\n\nkept too\n")
    kept = tool.other_sections(old)
    assert kept.startswith("## The earlier MesoNets") and "kept text" in kept and "kept too" in kept
    assert "old figures" not in kept and "Generated by it" not in kept
    assert tool.other_sections("") == ""


def test_compare_only_ships_nothing_and_pairs_every_candidate_with_the_first(tool, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "work"
    for name, sep, seed in (("shipped", 1.0, 0), ("new", 1.5, 5)):
        _cache(out, name, sep, sep, seed)
        pd.concat([_videos(DFDC, 50, sep, seed + 3, "dt"), _videos(FFPP, 10, sep, seed + 4, "ft")]
                  ).to_csv(out / "scores" / f"{name}-test.csv", index=False)
        _videos(FFPP, 40, sep, seed + 6, "fa").to_csv(out / "scores" / f"{name}-ffpp-all.csv",
                                                     index=False)
        presets.write_preset(presets.ModelPreset(name=name, extra={
            "train_sources": [DFDC], "fake_sources": [], "train_split": "train"}),
            tmp_path / name)
    monkeypatch.setattr(tool, "ship", lambda *a, **k: pytest.fail("shipped"))
    monkeypatch.setattr("sys.argv", [
        "ship_default.py", "--shards", str(tmp_path / "no-shards"), "--out", str(out),
        "--compare-only", "--condition", "stored", "--bootstrap", "50",
        "--candidate", "shipped=a.keras", "--trained-on", f"shipped={tmp_path / 'shipped'}",
        "--candidate", "new=b.keras", "--trained-on", f"new={tmp_path / 'new'}"])
    assert tool.main() == 0
    assert list(pd.read_csv(out / "selection.csv")["model"]) == ["new", "shipped"]
    per = pd.read_csv(out / "compare-per-source.csv")
    assert set(per["model"]) == {"shipped", "new", "shipped (all FF++)", "new (all FF++)"}
    paired = pd.read_csv(out / "compare-paired.csv")
    assert set(paired["model"]) == {"new", "new (all FF++)"}
    row = paired[(paired["model"] == "new (all FF++)")].iloc[0]
    table = pd.read_csv(out / "scores" / "new-ffpp-all.csv")
    ref = pd.read_csv(out / "scores" / "shipped-ffpp-all.csv")
    want = roc_auc_score(table["label"], table["p_fake"]) - roc_auc_score(ref["label"],
                                                                           ref["p_fake"])
    assert row["difference"] == pytest.approx(want)
    # the choice's arguments for shipping are refused with it, before any work
    for extra in (["--reference", "dfdc_meso4"], ["--clips", "clips.txt"]):
        monkeypatch.setattr("sys.argv", ["ship_default.py", "--shards", "x", "--out", "y",
                                         "--candidate", "a=a.keras", "--compare-only", *extra])
        with pytest.raises(SystemExit, match="--compare-only compares the candidates"):
            tool.main()
