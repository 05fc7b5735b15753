"""Predictive uncertainty and the human-review threshold.

Why: at the line a wrong "pass" is worse than a call to an inspector.  A
risk-coverage curve shows how many parts must go to review for a given
residual error on the parts the model decides alone; the review threshold is
chosen on validation from a target residual error and stored with the model
(sidecar ``review_below``).  Max-probability and entropy work on calibrated
probabilities; MC-dropout and test-time augmentation are optional, costlier
estimates that need the Keras model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kdefect.trust.operating_point import clopper_pearson

log = logging.getLogger(__name__)


def max_prob(probs: np.ndarray) -> np.ndarray:
    """Top-class probability (higher = more confident)."""
    return np.asarray(probs, np.float64).max(axis=1)


def entropy(probs: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Predictive entropy (higher = less certain), divided by log K when ``normalize``."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return h / np.log(p.shape[1]) if normalize and p.shape[1] > 1 else h


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Accept the most confident parts first: coverage, risk (error among accepted) and threshold per cut.

    Cuts fall only between distinct confidence values, so "accept if
    confidence >= threshold" reproduces each point exactly.  Thresholds fall
    as coverage rises.
    """
    conf = np.asarray(confidence, np.float64)
    wrong = ~np.asarray(correct, bool)
    order = np.argsort(-conf, kind="stable")
    c, w = conf[order], wrong[order]
    n = len(c)
    if n == 0:
        return {"coverage": np.zeros(0), "risk": np.zeros(0), "threshold": np.zeros(0)}
    last_of_tie = np.r_[c[1:] != c[:-1], True]
    k = np.nonzero(last_of_tie)[0] + 1
    errs = np.cumsum(w)[k - 1]
    return {"coverage": k / n, "risk": errs / k, "threshold": c[k - 1], "errors": errs, "accepted": k}


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk-coverage curve (lower is better)."""
    rc = risk_coverage(confidence, correct)
    if len(rc["coverage"]) == 0:
        return 0.0
    c, r = rc["coverage"], rc["risk"]
    return float(((c[1:] - c[:-1]) * (r[1:] + r[:-1]) / 2).sum()) if len(c) > 1 else float(r[0])


def review_threshold(confidence: np.ndarray, correct: np.ndarray, target_risk: float) -> float:
    """Smallest confidence to accept so that the residual error on accepted parts is <= target.

    Returns 0.0 when everything may be accepted and a value above every
    confidence (review all) when even the most confident part is wrong.
    """
    rc = risk_coverage(confidence, correct)
    if len(rc["risk"]) == 0:
        return 0.0
    ok = np.nonzero(rc["risk"] <= target_risk + 1e-12)[0]
    if len(ok) == 0:
        return float(np.nextafter(rc["threshold"][0], np.inf))
    i = ok[-1]
    return 0.0 if rc["coverage"][i] >= 1.0 else float(rc["threshold"][i])


def evaluate_review(confidence: np.ndarray, correct: np.ndarray, review_below: float) -> dict[str, Any]:
    """Review share and residual error (with its 95% Clopper-Pearson upper bound) at a threshold."""
    conf = np.asarray(confidence, np.float64)
    wrong = ~np.asarray(correct, bool)
    accept = conf >= review_below
    n_acc, errs = int(accept.sum()), int(wrong[accept].sum())
    return {
        "review_below": float(review_below),
        "review_share": float(1 - accept.mean()) if len(conf) else 0.0,
        "accepted": n_acc, "errors_accepted": errs,
        "residual_error": errs / n_acc if n_acc else 0.0,
        "residual_error_upper95": clopper_pearson(errs, n_acc)[1] if n_acc else 1.0,
        "error_without_review": float(wrong.mean()) if len(conf) else 0.0,
    }


def review_share_for_risk(confidence: np.ndarray, correct: np.ndarray, target_risk: float) -> float:
    """Smallest share of parts sent to review so the rest has error <= target (on this same data)."""
    rc = risk_coverage(confidence, correct)
    ok = np.nonzero(rc["risk"] <= target_risk + 1e-12)[0]
    return float(1 - rc["coverage"][ok[-1]]) if len(ok) else 1.0


def _batched(model: Any, images: np.ndarray, batch_size: int, training: bool) -> np.ndarray:
    out = [np.asarray(model(images[i:i + batch_size].astype(np.float32), training=training))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))


def mc_dropout_probs(model: Any, images: np.ndarray, n: int = 20, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the softmax over ``n`` passes with dropout active (Gal & Ghahramani 2016).

    BatchNorm layers are frozen (``trainable=False`` makes tf_keras BN run in
    inference mode) so only dropout is random and no moving statistic moves.
    """
    from kdefect.keras import keras  # lazy: TensorFlow loads only when used

    bns = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    saved = [b.trainable for b in bns]
    try:
        for b in bns:
            b.trainable = False
        runs = np.stack([_batched(model, images, batch_size, True) for _ in range(n)])
    finally:
        for b, s in zip(bns, saved, strict=True):
            b.trainable = s
    return runs.mean(0), runs.std(0)


TTA_OPS = {
    "id": lambda x: x,
    "fliplr": lambda x: x[:, :, ::-1],
    "flipud": lambda x: x[:, ::-1],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
}


def tta_probs(model: Any, images: np.ndarray, ops: tuple[str, ...] = ("id", "fliplr", "flipud", "rot90"),
              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the softmax over flips / 90-degree rotations (square inputs for rot90)."""
    runs = np.stack([_batched(model, np.ascontiguousarray(TTA_OPS[o](images)), batch_size, False) for o in ops])
    return runs.mean(0), runs.std(0)
