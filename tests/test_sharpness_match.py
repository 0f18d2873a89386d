"""Sharpness matching (``augment.sharpness_match``): a batch's REAL faces moved onto its FAKE
faces' sharpness, so that sharpness alone no longer tells the label (docs/training.md)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dfd.training.augment import blur, match_sharpness, sharpness
from dfd.training.config import AugmentConfig
from tests.test_augment_robust import _faces, _first_batch_of, _only

S = 48


def _batch(n_real=8, n_fake=8, seed=0):
    """Sharp REAL faces and FAKE ones of graded blur: sharpness alone separates them."""
    x = blur(_faces(n_real + n_fake, seed=seed), 0.8).numpy()  # noise is sharper than faces
    fakes = [blur(x[n_real + i], 0.5 + 0.1 * i).numpy() for i in range(n_fake)]
    x[n_real:] = np.stack(fakes)
    y = np.array([0.0] * n_real + [1.0] * n_fake, np.float32)
    return x, y


def test_sharpness_is_the_audit_figure():
    cv2 = pytest.importorskip("cv2")
    from data_prep.audit import measure_image

    x = _faces(3, size=256)
    x[1] = blur(x[1], 1.2).numpy()
    got = sharpness(x).numpy()
    want = [measure_image(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))["sharpness"] for im in x]
    np.testing.assert_allclose(got, want, rtol=0.01)
    assert got[1] < 0.5 * got[0]


def test_real_faces_take_the_fake_faces_sharpness():
    x, y = _batch()
    before = sharpness(x).numpy()
    assert roc_auc_score(y, before) < 0.05  # the fakes are the blurrier ones
    out = match_sharpness(x, y, 1.0, seed=[1, 2]).numpy()
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[y == 1], x[y == 1])  # FAKE faces are never changed
    after = sharpness(out).numpy()
    # rank by rank, each REAL face lands near the FAKE face of its rank (log sharpness)
    gap = np.abs(np.log1p(np.sort(after[y == 0])) - np.log1p(np.sort(after[y == 1])))
    assert np.median(gap) < 0.2 and gap.max() < 0.4, gap
    assert 0.3 < roc_auc_score(y, after) < 0.7


def test_blurry_real_faces_are_sharpened():
    x, y = _batch()
    # swap the roles: blurred REAL faces, sharp FAKE ones
    out = match_sharpness(x, 1.0 - y, 1.0, seed=[0, 0]).numpy()
    np.testing.assert_array_equal(out[y == 0], x[y == 0])
    assert np.median(sharpness(out[y == 1]).numpy()) > 1.5 * np.median(sharpness(x[y == 1]).numpy())


def test_batches_without_both_labels_share_zero_and_seeds():
    x, y = _batch()
    np.testing.assert_array_equal(match_sharpness(x[y == 0], y[y == 0], 1.0).numpy(), x[y == 0])
    np.testing.assert_array_equal(match_sharpness(x[y == 1], y[y == 1], 1.0).numpy(), x[y == 1])
    np.testing.assert_array_equal(match_sharpness(x, y, 0.0, seed=[3, 4]).numpy(), x)
    a = match_sharpness(x, y, 0.5, seed=[3, 4]).numpy()
    np.testing.assert_array_equal(a, match_sharpness(x, y, 0.5, seed=[3, 4]).numpy())
    changed = [not np.array_equal(a[i], x[i]) for i in range(len(x))]
    assert 0 < sum(changed) < 8 and not any(changed[8:])  # some REAL faces, no FAKE one


def test_clips_get_one_operation_per_clip_and_keep_padding():
    x, y = _batch(4, 4)
    clips = np.stack([x[i:i + 1].repeat(3, axis=0) for i in range(8)])  # [8, 3, S, S, 3]
    mask = np.ones((8, 3), bool)
    mask[0, 2] = False
    clips[0, 2] = 0
    out = match_sharpness(clips, y, 1.0, mask=mask, seed=[0, 1]).numpy()
    assert out.shape == clips.shape
    np.testing.assert_array_equal(out[4:], clips[4:])
    assert not out[0, 2].any()  # the padded frame stays zero
    for c in range(4):  # the same frame three times: the same operation on each
        np.testing.assert_array_equal(out[c, 0], out[c, 1])
    assert np.median(sharpness(out[:4, 0]).numpy()) < 0.6 * np.median(sharpness(x[:4]).numpy())


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, S, S), np.uint8), "rank 3"),
    (np.zeros((2, S, S, 3), np.float32), "float32"),
    (np.zeros((2, 6, 6, 3), np.uint8), "6 x 6"),
])
def test_bad_input_says_what_was_wrong(bad, match):
    with pytest.raises(ValueError, match=match):
        match_sharpness(bad, np.zeros(2, np.float32), 1.0)


def test_config_checks_the_share_and_runs_it_on_batches():
    assert AugmentConfig().sharpness_match == 0 and not AugmentConfig().match_active
    assert _only(sharpness_match=1.0).match_active and not _only(sharpness_match=1.0).active
    with pytest.raises(ValueError, match="sharpness_match"):
        AugmentConfig(sharpness_match=1.5)


def test_training_pipeline_matches_only_the_real_examples(tmp_path):
    first_batch = _first_batch_of(tmp_path)
    plain, matched = first_batch(), first_batch(sharpness_match=1.0)
    np.testing.assert_array_equal(plain[1], matched[1])  # same examples, same order
    y = plain[1]
    assert 0 < (y < 0.5).sum() < len(y)
    np.testing.assert_array_equal(matched[0][y > 0.5], plain[0][y > 0.5])
    assert not np.array_equal(matched[0][y < 0.5], plain[0][y < 0.5])
