"""Losses for imbalanced defect classes (on one-hot targets and softmax probabilities).

* ``compute_class_weights``: inverse frequency or the effective number of
  samples (Cui et al. 2019, "Class-Balanced Loss"), normalised to mean 1 so the
  loss scale (and a tuned learning rate) stays the same as unweighted.
* ``WeightedCrossEntropy`` and ``FocalLoss`` (Lin et al. 2017) with per-class
  alpha and label smoothing; registered so compiled models reload.
* ``build_loss(cfg.loss, weights)`` through the ``LOSSES`` registry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kdefect.config import LossConfig
from kdefect.core.registry import Registry
from kdefect.errors import ConfigError
from kdefect.keras import keras, tf

log = logging.getLogger(__name__)

EPS = 1e-7
LOSSES = Registry("loss")
WEIGHT_MODES = ("none", "inverse", "effective")


def compute_class_weights(counts: np.ndarray | Sequence[int], mode: str = "none", beta: float = 0.999) -> np.ndarray:
    """Per-class weights from training counts, normalised to mean 1.

    inverse: w ~ 1/n. effective: w ~ (1-beta)/(1-beta^n), which saturates for big
    classes instead of growing without bound (beta -> 1 approaches inverse).
    A class with 0 images is treated as having 1 (and logged) to stay finite.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ConfigError(f"class counts must be a non-empty 1-D vector, got shape {n.shape}.")
    if mode not in WEIGHT_MODES:
        raise ConfigError(f"loss.class_weights: '{mode}' is not one of {', '.join(WEIGHT_MODES)}.")
    if mode == "none":
        return np.ones_like(n)
    if (n <= 0).any():
        log.warning("class weights: classes %s have no training images; counted as 1", np.flatnonzero(n <= 0))
        n = np.maximum(n, 1.0)
    if mode == "inverse":
        w = 1.0 / n
    else:
        if not 0.0 < beta < 1.0:
            raise ConfigError(f"loss.beta must be in (0, 1) for effective-number weights, got {beta}.")
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w / w.mean()


def _smooth(y_true: tf.Tensor, smoothing: float) -> tf.Tensor:
    y = tf.cast(y_true, tf.float32)
    if smoothing:
        k = tf.cast(tf.shape(y)[-1], tf.float32)
        y = y * (1.0 - smoothing) + smoothing / k
    return y


def _vector(values: Sequence[float] | np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


@keras.saving.register_keras_serializable(package="kdefect")
class WeightedCrossEntropy(keras.losses.Loss):
    """Cross-entropy with a weight per true class: -sum_k w_k y_k log p_k."""

    def __init__(self, weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                 name: str = "weighted_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.weights = _vector(weights)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y = _smooth(y_true, self.label_smoothing)
        p = tf.clip_by_value(tf.cast(y_pred, tf.float32), EPS, 1.0 - EPS)
        ce = -y * tf.math.log(p)
        if self.weights is not None:
            ce = ce * tf.constant(self.weights, tf.float32)
        return tf.reduce_sum(ce, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": self.weights, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="kdefect")
class FocalLoss(keras.losses.Loss):
    """Focal loss: -sum_k alpha_k y_k (1-p_k)^gamma log p_k; gamma=0, alpha=None is cross-entropy.

    The (1-p)^gamma factor shrinks the loss of examples the model already gets
    right, so rare and hard defects dominate the gradient.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None, label_smoothing: float = 0.0,
                 name: str = "focal_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if gamma < 0:
            raise ConfigError(f"loss.gamma must be >= 0, got {gamma}.")
        self.gamma = float(gamma)
        self.alpha = _vector(alpha)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y = _smooth(y_true, self.label_smoothing)
        p = tf.clip_by_value(tf.cast(y_pred, tf.float32), EPS, 1.0 - EPS)
        loss = -y * tf.pow(1.0 - p, self.gamma) * tf.math.log(p)
        if self.alpha is not None:
            loss = loss * tf.constant(self.alpha, tf.float32)
        return tf.reduce_sum(loss, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha,
                "label_smoothing": self.label_smoothing}


def _parse_alpha(text: str, class_weights: np.ndarray | None) -> list[float] | None:
    t = str(text).strip().lower()
    if t in ("none", ""):
        return None
    if t == "class_weights":
        return _vector(class_weights)
    try:
        return [float(v) for v in t.strip("[]").split(",")]
    except ValueError as exc:
        raise ConfigError(
            f"loss.alpha: '{text}' must be none, class_weights or comma-separated numbers (one per class)."
        ) from exc


@LOSSES.register("crossentropy")
def _crossentropy(cfg: LossConfig, class_weights: np.ndarray | None) -> keras.losses.Loss:
    weights = None if class_weights is None or cfg.class_weights == "none" else class_weights
    return WeightedCrossEntropy(weights=weights, label_smoothing=cfg.label_smoothing)


@LOSSES.register("focal")
def _focal(cfg: LossConfig, class_weights: np.ndarray | None) -> keras.losses.Loss:
    return FocalLoss(gamma=cfg.gamma, alpha=_parse_alpha(cfg.alpha, class_weights),
                     label_smoothing=cfg.label_smoothing)


def build_loss(loss_cfg: LossConfig, class_weights: np.ndarray | None = None) -> keras.losses.Loss:
    """The configured loss; ``class_weights`` (from ``compute_class_weights``) weight CE or become focal alpha."""
    loss = LOSSES.get(loss_cfg.name)(loss_cfg, class_weights)
    log.info("loss %s (%s)", loss_cfg.name, loss.get_config())
    return loss
