"""Confidence drift must not confuse INT8 output quantization with a process change."""

from __future__ import annotations

import numpy as np

from kdefect.trust.monitor import confidence_psi


def _calibrated_top(runner_up: np.ndarray, temperature: float = 0.4) -> np.ndarray:
    """Two-class view: top-class probability after temperature scaling, rounded like the decision log."""
    q = np.clip(runner_up, 1e-6, 0.5)
    return np.round(1 / (1 + (q / (1 - q)) ** (1 / temperature)), 6)


def test_quantized_copy_of_the_baseline_is_not_drift():
    rng = np.random.default_rng(0)
    raw = rng.beta(0.5, 20, 400)  # the float model's runner-up share: a confident, well-trained model
    base = _calibrated_top(raw)  # the float validation baseline (kdefect calibrate)
    device = _calibrated_top(np.round(raw * 256) / 256)  # the same parts through uint8 outputs (1/256 steps)
    assert confidence_psi(base, device) < 0.1


def test_less_confident_stream_is_drift():
    rng = np.random.default_rng(1)
    base = _calibrated_top(rng.beta(0.5, 20, 400))
    shifted = _calibrated_top(rng.beta(2.0, 6, 400))  # many parts now far less certain
    assert confidence_psi(base, shifted) > 0.25
