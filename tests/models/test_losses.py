"""Class weights, weighted cross-entropy and focal loss."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.config import LossConfig
from kdefect.errors import ConfigError
from kdefect.keras import keras
from kdefect.losses import FocalLoss, WeightedCrossEntropy, build_loss, compute_class_weights

Y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.05, 0.9, 0.05]], "float32")


def test_class_weights_known_values():
    counts = np.array([100, 10, 1])
    np.testing.assert_array_equal(compute_class_weights(counts, "none"), [1, 1, 1])
    inv = compute_class_weights(counts, "inverse")
    np.testing.assert_allclose(inv, np.array([0.01, 0.1, 1.0]) / 0.37)
    eff = compute_class_weights(counts, "effective", beta=0.9)
    raw = np.array([0.1 / (1 - 0.9**100), 0.1 / (1 - 0.9**10), 1.0])
    np.testing.assert_allclose(eff, raw / raw.mean())
    for w in (inv, eff):
        assert w.mean() == pytest.approx(1.0) and w[2] > w[1] > w[0]
    with pytest.raises(ConfigError, match=r"loss\.class_weights"):
        compute_class_weights(counts, "inv")


def test_focal_equals_crossentropy_when_gamma_zero():
    ce = keras.losses.CategoricalCrossentropy()(Y, P).numpy()
    assert FocalLoss(gamma=0.0)(Y, P).numpy() == pytest.approx(ce, rel=1e-5)
    assert WeightedCrossEntropy()(Y, P).numpy() == pytest.approx(ce, rel=1e-5)
    ce_ls = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(Y, P).numpy()
    assert FocalLoss(gamma=0.0, label_smoothing=0.1)(Y, P).numpy() == pytest.approx(ce_ls, rel=1e-4)


def test_focal_downweights_easy_examples():
    y = np.eye(2, dtype="float32")[[0, 0]]
    easy, hard = np.array([[0.95, 0.05]], "float32"), np.array([[0.3, 0.7]], "float32")
    ce, fl = WeightedCrossEntropy(), FocalLoss(gamma=2.0)
    ratio_easy = fl(y[:1], easy).numpy() / ce(y[:1], easy).numpy()
    ratio_hard = fl(y[:1], hard).numpy() / ce(y[:1], hard).numpy()
    assert ratio_easy == pytest.approx(0.05**2, rel=1e-4) and ratio_hard == pytest.approx(0.7**2, rel=1e-4)
    assert np.isfinite(fl(y[:1], np.array([[0.0, 1.0]], "float32")).numpy())  # clipped, no inf


def test_weighted_ce_and_alpha_scale_per_true_class():
    w = np.array([1.0, 2.0, 3.0])
    per = keras.losses.CategoricalCrossentropy(reduction="none")(Y, P).numpy()
    expected = (per * w[Y.argmax(1)]).mean()
    assert WeightedCrossEntropy(weights=w)(Y, P).numpy() == pytest.approx(expected, rel=1e-5)
    assert FocalLoss(gamma=0.0, alpha=w)(Y, P).numpy() == pytest.approx(expected, rel=1e-5)


def test_build_loss_from_config_and_serialise():
    w = np.array([0.5, 1.5])
    focal = build_loss(LossConfig(name="focal", gamma=1.0, alpha="class_weights"), w)
    assert isinstance(focal, FocalLoss) and focal.alpha == [0.5, 1.5] and focal.gamma == 1.0
    assert build_loss(LossConfig(name="focal", alpha="0.25,0.75"), None).alpha == [0.25, 0.75]
    assert build_loss(LossConfig(name="focal", alpha="none"), w).alpha is None
    ce = build_loss(LossConfig(name="crossentropy", class_weights="inverse", label_smoothing=0.1), w)
    assert isinstance(ce, WeightedCrossEntropy) and ce.weights == [0.5, 1.5] and ce.label_smoothing == 0.1
    assert build_loss(LossConfig(class_weights="none"), w).weights is None
    again = keras.losses.deserialize(keras.losses.serialize(focal))
    assert isinstance(again, FocalLoss) and again.get_config() == focal.get_config()
    with pytest.raises(ConfigError, match="Did you mean 'focal'"):
        build_loss(LossConfig(name="focall"), None)
