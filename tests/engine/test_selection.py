"""Model selection on the safety metric: streaming metrics match numpy, ties and directions are right."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.engine.selection import (
    FalseRejectAtEscape,
    MacroRecall,
    direction,
    resolve_monitor,
    score,
    selection_keys,
)
from kdefect.errors import ConfigError
from kdefect.trust.operating_point import choose_threshold, evaluate_threshold


def _data(seed: int = 0, n: int = 400, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return np.eye(k, dtype=np.float32)[y], p.astype(np.float32), y


def test_macro_recall_streams_over_batches():
    onehot, p, y = _data()
    m = MacroRecall(4)
    for i in range(0, len(y), 64):
        m.update_state(onehot[i:i + 64], p[i:i + 64])
    pred = p.argmax(1)
    expected = np.mean([(pred[y == c] == c).mean() for c in range(4)])
    assert float(m.result()) == pytest.approx(expected, abs=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_false_reject_at_escape_matches_the_operating_point(target):
    onehot, p, y = _data(seed=1)
    m = FalseRejectAtEscape(good_index=0, target=target, bins=1000)
    for i in range(0, len(y), 50):
        m.update_state(onehot[i:i + 50], p[i:i + 50])
    thr = choose_threshold(p[:, 0], y, 0, target)
    exact = evaluate_threshold(p, y, 0, thr)
    assert exact["escape_rate"] <= target + 1e-9
    # the metric puts the threshold on a bin edge at or below the exact one: at most one bin's good parts more
    goods_in_bin = np.sum((y == 0) & (np.abs(p[:, 0] - thr) <= 1e-3))
    assert exact["false_reject_rate"] - 1e-6 <= float(m.result()) + goods_in_bin / (y == 0).sum()
    assert float(m.result()) <= exact["false_reject_rate"] + goods_in_bin / (y == 0).sum() + 1e-6


def test_all_good_model_has_the_worst_false_reject_rate():
    y = np.array([0] * 80 + [1] * 20)
    p = np.tile([[0.9, 0.1]], (100, 1)).astype(np.float32)  # calls everything good
    m = FalseRejectAtEscape(0, 0.01)
    m.update_state(np.eye(2, dtype=np.float32)[y], p)
    assert float(m.result()) == pytest.approx(1.0)  # staying under 1% escapes means rejecting every good part


def test_monitor_resolution_and_directions():
    assert resolve_monitor("auto", 0, True) == "val_frr_at_escape"
    assert resolve_monitor("auto", None, True) == "val_macro_recall"
    assert resolve_monitor("val_loss", 0, False) == "loss"
    with pytest.raises(ConfigError, match="needs a good class"):
        resolve_monitor("val_frr_at_escape", None, True)
    assert direction("val_macro_recall") == "max" and direction("val_frr_at_escape") == "min"


def test_ties_go_to_higher_recall_then_lower_loss():
    keys = selection_keys("val_frr_at_escape")
    a = score({"val_frr_at_escape": 0.0, "val_macro_recall": 0.9, "val_loss": 0.3}, keys)
    b = score({"val_frr_at_escape": 0.0, "val_macro_recall": 0.95, "val_loss": 0.5}, keys)
    c = score({"val_frr_at_escape": 0.0, "val_macro_recall": 0.95, "val_loss": 0.4}, keys)
    d = score({"val_frr_at_escape": 0.1, "val_macro_recall": 1.0, "val_loss": 0.1}, keys)
    assert min([a, b, c, d]) == c
    assert score({"val_loss": 0.1}, keys) is None
