"""YOLOv8 training tricks as Keras callbacks, each off unless its ``detect.*`` key turns it on.

- ``WeightEMA`` (``detect.ema``): an exponential moving average of every weight, BatchNorm statistics included,
  with Ultralytics' ramp ``decay * (1 - exp(-updates / tau))`` so early, poor weights fade fast.  Validation,
  the kept epoch and the final model use the averaged weights; training steps use the raw ones.
- ``LinearWarmup`` (``detect.warmup_epochs``): the learning rate rises linearly from ~0 to its scheduled value
  over the first steps, so a from-scratch detector's large early gradients do not wreck its BatchNorm.
- ``MosaicOff`` (``detect.mosaic_epochs``): Mosaic for the first epochs only, then the real image statistics
  (YOLOv8 closes mosaic for its last epochs; under a time budget the last epochs are unknown, the first are not).
- ``ValMAP`` (``train.monitor: val_map50``): the validation mAP@0.5 after every epoch, as ``val_map50`` in the
  logs, so the epoch kept is the one that finds defects best, not the one with the lowest loss (a detector's
  validation loss can rise from over-confident boxes while its mAP still climbs).

None is on by default: a trick becomes a default only after a measured benchmark, and at a 10-minute CPU budget
each one lowered NEU-DET mAP@0.5 (tools/results/detect_tricks.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kdefect.keras import keras, tf


class WeightEMA(keras.callbacks.Callback):
    """Averaged weights for validation and the result; put it *before* ``KeepBest`` so that keeps averages."""

    def __init__(self, decay: float = 0.9999, tau: float = 2000.0) -> None:
        super().__init__()
        self._supports_tf_logs = True  # its batch hook never reads the logs: no numpy copy (a sync) per step
        self.decay, self.tau = float(decay), float(tau)
        self.updates = 0
        self._shadow: list[tf.Variable] = []
        self._raw: list[Any] | None = None  # the raw weights while the averages are swapped in

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._shadow = [tf.Variable(w, trainable=False) for w in self.model.weights]
        self.updates, self._raw = 0, None

    def _update(self, d: float) -> None:
        for s, w in zip(self._shadow, self.model.weights):
            s.assign(d * s + (1.0 - d) * tf.cast(w, s.dtype))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.updates += 1
        self._update_fn(tf.constant(self.decay * (1.0 - math.exp(-self.updates / self.tau)), tf.float32))

    @property
    def _update_fn(self) -> Any:
        if not hasattr(self, "_compiled"):
            self._compiled = tf.function(self._update)
        return self._compiled

    def swap_in(self) -> None:
        """Put the averages into the model (the raw weights are kept to train on)."""
        if self._raw is None and self._shadow:
            self._raw = self.model.get_weights()
            self.model.set_weights([s.numpy() for s in self._shadow])

    def swap_out(self) -> None:
        if self._raw is not None:
            self.model.set_weights(self._raw)
            self._raw = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.swap_in()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.swap_in()  # without validation too: KeepBest (after this callback) snapshots the averages

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.swap_out()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.swap_in()
        self._raw = None  # the averages are the result


class LinearWarmup(keras.callbacks.Callback):
    """Scale the learning rate by (step + 1) / ``steps`` for the first ``steps`` training steps."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self._supports_tf_logs = True  # its batch hooks never read the logs: no numpy copy (a sync) per step
        self.steps = int(steps)
        self.step = 0
        self._target: float | None = None
        self._set: float | None = None  # the rate this callback last wrote

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.step >= self.steps:
            return
        lr = self.model.optimizer.learning_rate
        now = float(keras.backend.get_value(lr))
        if self._target is None or not math.isclose(now, self._set or 0.0, rel_tol=1e-5):  # or a schedule set one
            self._target = now
        self._set = self._target * (self.step + 1) / self.steps
        keras.backend.set_value(lr, self._set)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.step == self.steps and self._target is not None:  # warmed up: hand the scheduled rate back
            keras.backend.set_value(self.model.optimizer.learning_rate, self._target)


class MosaicOff(keras.callbacks.Callback):
    """Turn the training pipeline's Mosaic switch off from epoch ``epochs`` on (batches prefetched keep it)."""

    def __init__(self, switch: tf.Variable, epochs: int) -> None:
        super().__init__()
        self.switch, self.epochs = switch, int(epochs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch >= self.epochs and bool(self.switch.numpy()):
            self.switch.assign(False)


class ValMAP(keras.callbacks.Callback):
    """Add ``val_map50`` (``score(raw_head_model)``) to each epoch's logs; put it after ``WeightEMA``, before
    ``KeepBest`` and the history, so the averages are scored and the value is kept and recorded."""

    def __init__(self, score: Callable[[keras.Model], float], make_raw: Callable[[keras.Model], keras.Model]
                 ) -> None:
        super().__init__()
        self.score, self.make_raw = score, make_raw
        self._raw: keras.Model | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._raw = self.make_raw(self.model)  # shares the layers: always scores the current weights

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self._raw is not None:
            logs["val_map50"] = self.score(self._raw)


def warmup_steps(epochs: float, n_train: int, batch_size: int, steps_per_epoch: int | None) -> int:
    """``detect.warmup_epochs`` in optimizer steps (0: off)."""
    per_epoch = steps_per_epoch or max(1, math.ceil(n_train / max(batch_size, 1)))
    return round(epochs * per_epoch)
