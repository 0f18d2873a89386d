"""dfd.evaluation.stacker: features, fitting, beating its inputs, JSON round trip without pickle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfd.evaluation import stacker as S
from dfd.evaluation import stacking


def _split(n, seed, prefix):
    """Model a informative on one half of the videos, b on the other, c anti-correlated."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    y = rng.integers(0, 2, n)
    half = rng.random(n) < 0.5
    sig = 2.0 * y - 1.0

    def table(name, logit):
        return pd.DataFrame({"video_id": ids, "label": y, "p_fake": 1 / (1 + np.exp(-logit)),
                             "status": "ok", "model": name})

    a = table("a", np.where(half, 2 * sig, 0) + rng.normal(0, 1, n))
    b = table("b", np.where(~half, 2 * sig, 0) + rng.normal(0, 1, n))
    c = table("c", -1.5 * sig + rng.normal(0, 1.5, n))
    return {"a": a, "b": b, "c": c}, pd.Series(y, index=ids)


def test_stacker_beats_or_equals_best_input():
    train, ytr = _split(400, 1, "tr")
    test, yte = _split(400, 2, "te")
    st = stacking.fit(S.build_features(train), ytr)
    feats = S.build_features(test)
    p = st.predict_features(feats)
    auc = roc_auc_score(yte.loc[feats.index], p)
    inputs = {c: roc_auc_score(yte.loc[feats.index], feats[c]) for c in feats.columns}
    assert inputs["c"] < 0.5  # anti-correlated input
    assert auc >= max(inputs.values()), (auc, inputs)
    assert auc >= roc_auc_score(yte.loc[feats.index], S.average_scores(feats))
    assert st.coef[feats.columns.get_loc("c")] < 0


def test_json_round_trip_identical_and_equal_to_sklearn(tmp_path):
    train, ytr = _split(200, 3, "tr")
    feats = S.build_features(train)
    st = stacking.fit(feats, ytr, C=0.5)
    path = st.save(tmp_path / "stacker.json")
    d = json.loads(path.read_text())
    assert d["n_train"] == 200 and set(d["versions"]) >= {"sklearn", "numpy", "dfd-tf"}
    back = S.Stacker.load(path)
    assert back == st
    X = feats.to_numpy(float)
    np.testing.assert_array_equal(back.predict_proba(X), st.predict_proba(X))
    pipe = stacking.make_pipeline(0.5).fit(X, ytr.loc[feats.index].to_numpy())
    np.testing.assert_allclose(back.predict_proba(X), pipe.predict_proba(X)[:, 1], rtol=0, atol=1e-12)


def test_load_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something"}))
    with pytest.raises(ValueError, match="not a stacker file"):
        S.Stacker.load(p)


def test_frame_table_features_and_primary_average():
    frames = pd.DataFrame({"video_id": ["v1"] * 4 + ["v2"] * 2, "track": 0,
                           "frame_index": [0, 1, 2, 3, 0, 1], "p_fake": [0.2, 0.4, 0.6, 0.9, 0.1, 0.3],
                           "model": "m"})
    video = pd.DataFrame({"video_id": ["v1", "v2"], "label": [1, 0], "p_fake": [0.7, 0.2], "status": "ok"})
    f = S.build_features({"m": frames, "t": video})
    assert list(f.columns) == ["m:mean", "m:vote", "m:max", "t"]
    assert f.loc["v1"].tolist() == pytest.approx([0.525, 0.5, 0.9, 0.7])
    assert S.average_scores(f).tolist() == pytest.approx([(0.525 + 0.7) / 2, (0.2 + 0.2) / 2])


def test_missing_video_names_model_and_videos():
    tables, _ = _split(20, 4, "v")
    tables["b"] = tables["b"].iloc[2:]
    with pytest.raises(S.MissingScoresError, match=r"model 'b'.*2 video\(s\).*'v000'"):
        S.build_features(tables)


def test_frame_table_may_lack_no_face_videos_and_they_become_failures():
    frames = pd.DataFrame({"video_id": ["v1", "v2"], "track": 0, "frame_index": 0,
                           "p_fake": [0.8, 0.2], "model": "m"})
    video = pd.DataFrame({"video_id": ["v1", "v2", "v3"], "label": [1, 0, 1],
                          "p_fake": [0.7, 0.2, np.nan], "status": ["ok", "ok", "no_face"]})
    f = S.build_features({"m": frames, "t": video})
    assert f.loc["v3"].isna().all()
    out = S.stacked_table(f, S.average_scores(f), pd.Series({"v3": 1}), "average", "average",
                          S.input_status({"t": video}))
    row = out.set_index("video_id").loc["v3"]
    assert row["status"] == "no_face" and np.isnan(row["p_fake"]) and "'m'" in row["error"]
    assert row["label"] == 1


def test_predict_needs_the_stackers_features():
    train, ytr = _split(60, 5, "tr")
    st = stacking.fit(S.build_features(train), ytr)
    with pytest.raises(S.MissingScoresError, match="'c'"):
        st.predict_features(S.build_features({k: train[k] for k in "ab"}))


def test_oof_scores_cover_labelled_videos():
    train, ytr = _split(120, 6, "tr")
    feats = S.build_features(train)
    oof = stacking.oof_predict(feats, ytr, n_splits=4)
    assert len(oof) == 120 and oof.between(0, 1).all()
    assert roc_auc_score(ytr.loc[oof.index], oof) > 0.8
    assert oof.attrs["folds"] == 4
    # more folds asked than the smaller class has videos: as many as it has, and said so
    few = ytr.copy()
    few[few.index[few == 1][7:]] = 0  # 7 FAKE videos left
    assert stacking.oof_predict(feats, few, n_splits=50).attrs["folds"] == 7


def test_fit_needs_both_classes():
    train, ytr = _split(30, 7, "tr")
    with pytest.raises(ValueError, match="REAL and FAKE"):
        stacking.fit(S.build_features(train), pd.Series(1, index=ytr.index))


def test_stacker_knows_the_videos_it_was_fitted_on(tmp_path):
    train, ytr = _split(120, 5, "tr")
    other, yo = _split(120, 6, "te")
    feats = S.build_features(train)
    st = stacking.fit(feats, ytr)
    assert st.fit_videos.startswith("sha256:")
    assert st.fitted_on(feats, ytr) is True
    assert st.fitted_on(feats.iloc[::-1], ytr) is True  # order does not matter
    assert st.fitted_on(S.build_features(other), yo) is False
    assert st.fitted_on(feats.iloc[1:], ytr) is False  # a subset is another set
    back = S.Stacker.load(st.save(tmp_path / "s.json"))
    assert back.fitted_on(feats, ytr) is True
    d = st.to_dict()
    del d["fit_videos"]  # a stacker saved before fingerprints: unknown
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert S.Stacker.load(tmp_path / "old.json").fitted_on(feats, ytr) is None
