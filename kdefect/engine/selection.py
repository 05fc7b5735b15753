"""Model selection on the safety metric, not on the validation loss.

Why: on imbalanced data the epoch with the lowest validation loss can be one
that calls every part good (the loss is dominated by the good class).  Which
epoch is kept, and when early stopping fires, is decided by ``train.monitor``:

- ``val_frr_at_escape`` (default when a good class exists): the false-reject
  rate at the P(good) threshold that keeps the validation escape rate under
  ``trust.target_escape``, i.e. the cost of being safe;
- ``val_macro_recall`` (default otherwise): the mean recall over classes;
- ``val_loss``: the old behaviour;
- ``val_map50`` (detection only): the validation mAP@0.5, computed after each epoch by
  ``kdefect.tasks.detect_tricks.ValMAP``.

Both safety metrics are streaming Keras metrics, so they come out of the same
validation pass as the loss (no second pass over the data).  Ties (common on
easy data: several epochs with 0 false rejects) go to the higher macro recall,
then the lower loss.
"""

from __future__ import annotations

import math
from typing import Any

from kdefect.errors import ConfigError
from kdefect.keras import keras, tf

MONITORS = ("val_loss", "val_macro_recall", "val_frr_at_escape")
_DIRECTION = {"loss": "min", "macro_recall": "max", "frr_at_escape": "min", "map50": "max"}


@keras.utils.register_keras_serializable(package="kdefect")
class MacroRecall(keras.metrics.Metric):
    """Mean per-class recall of argmax predictions (classes absent from the data are left out)."""

    def __init__(self, num_classes: int, name: str = "macro_recall", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.cm = self.add_weight(name="cm", shape=(self.num_classes, self.num_classes), initializer="zeros")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        cm = tf.math.confusion_matrix(tf.argmax(y_true, -1), tf.argmax(y_pred, -1), self.num_classes,
                                      dtype=tf.float32)
        self.cm.assign_add(cm)

    def result(self) -> Any:
        support = tf.reduce_sum(self.cm, axis=1)
        recall = tf.math.divide_no_nan(tf.linalg.diag_part(self.cm), support)
        present = tf.cast(support > 0, tf.float32)
        return tf.reduce_sum(recall * present) / tf.maximum(tf.reduce_sum(present), 1.0)

    def reset_state(self) -> None:
        self.cm.assign(tf.zeros_like(self.cm))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.utils.register_keras_serializable(package="kdefect")
class FalseRejectAtEscape(keras.metrics.Metric):
    """False-reject rate at the lowest P(good) threshold whose escape rate is <= ``target``.

    P(good) is histogrammed into ``bins`` equal bins per class (good / defective), so the
    threshold is found on bin edges: exact enough to rank epochs, and streaming.
    """

    def __init__(self, good_index: int, target: float = 0.01, bins: int = 1000, name: str = "frr_at_escape",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.good_index, self.target, self.bins = int(good_index), float(target), int(bins)
        self.hist = self.add_weight(name="hist", shape=(2, self.bins), initializer="zeros")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p = tf.cast(y_pred[:, self.good_index], tf.float32)
        b = tf.clip_by_value(tf.cast(tf.floor(p * self.bins), tf.int32), 0, self.bins - 1)
        is_good = tf.cast(tf.argmax(y_true, -1) == self.good_index, tf.int32)
        idx = tf.stack([1 - is_good, b], axis=1)  # row 0: good parts, row 1: defective parts
        self.hist.assign_add(tf.scatter_nd(idx, tf.ones_like(p), (2, self.bins)))

    def result(self) -> Any:
        good, bad = self.hist[0], self.hist[1]
        allowed = tf.floor(self.target * tf.reduce_sum(bad) + 1e-6)
        passed_bad = tf.concat([tf.cumsum(bad, reverse=True), [0.0]], 0)  # defective with bin >= b pass
        rejected_good = tf.concat([tf.cumsum(good, exclusive=True), [tf.reduce_sum(good)]], 0)
        first_ok = tf.argmax(tf.cast(passed_bad <= allowed, tf.int32))
        return tf.math.divide_no_nan(rejected_good[first_ok], tf.reduce_sum(good))

    def reset_state(self) -> None:
        self.hist.assign(tf.zeros_like(self.hist))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "good_index": self.good_index, "target": self.target, "bins": self.bins}


def check_classifier_monitor(monitor: str) -> None:
    """A ConfigError for a ``train.monitor`` that only a detector has (``val_map50``)."""
    if monitor not in ("auto", *MONITORS):
        raise ConfigError(f"train.monitor={monitor} is for detection; a classifier keeps its epoch by "
                          f"{', '.join(MONITORS)} (or auto).")


def resolve_monitor(monitor: str, good_index: int | None, has_val: bool) -> str:
    """``train.monitor`` with ``auto`` resolved; without a validation split the training loss decides."""
    if not has_val:
        return "loss"
    if monitor == "auto":
        return "val_frr_at_escape" if good_index is not None else "val_macro_recall"
    check_classifier_monitor(monitor)
    if monitor == "val_frr_at_escape" and good_index is None:
        raise ConfigError("train.monitor=val_frr_at_escape needs a good class (data.good_label); "
                          "use val_macro_recall or val_loss.")
    return monitor


def selection_metrics(num_classes: int, good_index: int | None, target_escape: float) -> list[keras.metrics.Metric]:
    """The metrics compiled into every classifier, so selection can read them from the validation logs."""
    out: list[keras.metrics.Metric] = [MacroRecall(num_classes)]
    if good_index is not None:
        out.append(FalseRejectAtEscape(good_index, target_escape))
    return out


def direction(monitor: str) -> str:
    """``min`` or ``max`` for a monitored log key."""
    return _DIRECTION.get(monitor.removeprefix("val_"), "min")


def selection_keys(monitor: str) -> list[tuple[str, float]]:
    """(log key, sign) in priority order; lower signed values are better."""
    prefix = "val_" if monitor.startswith("val_") else ""
    keys = [monitor, f"{prefix}macro_recall", f"{prefix}loss"]
    seen: list[str] = []
    for k in keys:
        if k not in seen:
            seen.append(k)
    return [(k, 1.0 if direction(k) == "min" else -1.0) for k in seen]


def score(logs: dict[str, Any], keys: list[tuple[str, float]]) -> tuple[float, ...] | None:
    """Comparable score (lower is better) of one epoch's logs; None when the primary key is missing."""
    if logs.get(keys[0][0]) is None:
        return None
    vals = []
    for k, sign in keys:
        v = logs.get(k)
        vals.append(math.inf if v is None or math.isnan(float(v)) else round(sign * float(v), 6))
    return tuple(vals)
