"""Keras callbacks that keep the run folder crash-safe and within budget."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.engine.selection import direction, score
from kdefect.errors import ModelError
from kdefect.keras import keras
from kdefect.utils.io import atomic_path, write_text

log = logging.getLogger(__name__)


class KeepBest(keras.callbacks.Callback):
    """The one keep-the-best-epoch mechanism (classifier training, detector training, QAT).

    Why: the last epoch is not reliably the best one, and the validation split can tell. "Best" compares
    ``keys`` in order ((log key, sign), lower signed value wins; ``kdefect.engine.selection``), by default the
    ``monitor`` alone, in its direction (``selection.direction``); an epoch whose monitored value is missing or not finite never counts.
    ``path``: also save the best model there, atomically, so a crash never leaves half a checkpoint.
    ``restore``: put the best weights back when training ends (kept in memory only then).
    ``defer_write``: keep the best weights in memory and write ``path`` only on ``flush()`` (each resume snapshot
    and the end of training), so the file on disk always matches the snapshot's best-epoch state and short epochs
    do not pay for a model save at every improvement.
    """

    def __init__(self, monitor: str = "val_loss", keys: list[tuple[str, float]] | None = None,
                 path: str | Path | None = None, restore: bool = True, defer_write: bool = False) -> None:
        super().__init__()
        self.monitor = monitor
        self.keys = keys or [(monitor, 1.0 if direction(monitor) == "min" else -1.0)]
        self.path = Path(path) if path is not None else None
        self.restore = restore
        self.defer_write = defer_write
        self.best: float | None = None
        self.best_epoch = -1
        self.last_epoch = -1
        self._best_score: tuple[float, ...] | None = None
        self._weights: list[Any] | None = None
        self._unwritten = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.last_epoch = epoch
        logs = logs or {}
        s = score(logs, self.keys)
        if s is None or not math.isfinite(s[0]) or (self._best_score is not None and s >= self._best_score):
            return
        self._best_score, self.best, self.best_epoch = s, float(logs[self.keys[0][0]]), epoch
        if self.restore or self.defer_write:
            self._weights = self.model.get_weights()
        if self.path is not None and self.defer_write:
            self._unwritten = True
        elif self.path is not None:
            self._write(self.path)
        log.debug("epoch %d: %s improved to %.4f", epoch + 1, self.keys[0][0], self.best)

    def _write(self, path: Path) -> None:
        with atomic_path(path, suffix=".keras") as tmp:
            self.model.save(tmp)

    def flush(self) -> None:
        """Write the best weights that ``defer_write`` held back (nothing to do when the file is current)."""
        if not self._unwritten or self.path is None or self._weights is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self._weights)
        try:
            self._write(self.path)
        finally:
            self.model.set_weights(current)
        self._unwritten = False

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.flush()
        if self.restore and self._weights is not None and self.best_epoch != self.last_epoch:
            self.model.set_weights(self._weights)
            log.info("kept epoch %d of %d (best %s %.4f)", self.best_epoch + 1, self.last_epoch + 1, self.monitor,
                     self.best)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop with a ModelError when an epoch's loss is NaN or inf: the weights are garbage from then on.

    Checked per epoch (a NaN in any batch makes the epoch mean NaN), so it adds no per-step hook.
    Put it first in the callback list, so no checkpoint or history row is written for that epoch.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        bad = {k: float(v) for k, v in (logs or {}).items()
               if k.endswith("loss") and not math.isfinite(float(v))}
        if bad:
            self.model.stop_training = True
            lr = self.model.optimizer.learning_rate
            lr_text = f"{float(keras.backend.get_value(lr)):g}" if not callable(lr) else "scheduled"
            raise ModelError(f"training diverged: {', '.join(f'{k}={v}' for k, v in bad.items())} at epoch "
                             f"{epoch + 1} (learning rate {lr_text}); the run is stopped and marked failed. "
                             "Lower train.learning_rate or check the data for broken images or labels.")


class HistoryCSV(keras.callbacks.Callback):
    """Rewrite ``history.csv`` atomically after every epoch (survives a crash, never half-written)."""

    def __init__(self, path: str | Path, rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = rows if rows is not None else []
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lr = self.model.optimizer.learning_rate
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._t0, 3),
               "learning_rate": float(keras.backend.get_value(lr)) if not callable(lr) else None}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        write_text(self.path, buf.getvalue())


class TimeBudget(keras.callbacks.Callback):
    """Stop training once the wall-clock budget is spent (checked after each batch)."""

    def __init__(self, seconds: float, start: float | None = None) -> None:
        super().__init__()
        self._supports_tf_logs = True  # it never reads the logs: Keras need not copy them to numpy (a sync) per step
        self.seconds = seconds
        self.start = start if start is not None else time.perf_counter()
        self.exhausted = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if time.perf_counter() - self.start > self.seconds:
            if not self.exhausted:
                log.info("time budget of %.0f s reached: stopping training", self.seconds)
            self.exhausted = True
            self.model.stop_training = True


class ImageCounter(keras.callbacks.Callback):
    """Training images/s over each epoch's training steps (validation excluded).

    Timed per epoch, not per batch, so it adds no per-step Python hook (which
    would make Keras synchronise after every batch).  The first epoch is kept
    apart: it pays for tracing and for filling the cache.
    """

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.images = 0
        self.seconds = 0.0
        self.warm_images = 0
        self.warm_seconds = 0.0
        self._epoch = 0
        self._t0 = 0.0
        self._train_end: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch, self._t0, self._train_end = epoch, time.perf_counter(), None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._train_end is None:  # validation at the end of a training epoch
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        dt = (self._train_end or time.perf_counter()) - self._t0
        images = int(self.params.get("steps") or 0) * self.batch_size
        self.seconds += dt
        self.images += images
        if epoch > 0:
            self.warm_seconds += dt
            self.warm_images += images

    @property
    def images_per_s(self) -> float:
        """Steady-state rate (after epoch 1) when available, else the overall rate."""
        if self.warm_images:
            return self.warm_images / max(self.warm_seconds, 1e-9)
        return self.images / max(self.seconds, 1e-9)


class CosineDecay(keras.callbacks.Callback):
    """Cosine learning-rate decay (with a short linear warm-up) over the epochs or the time budget.

    Why time-based: with ``train.time_budget_s`` the number of epochs is not
    known in advance, so progress is the elapsed share of the budget; the
    rate still reaches its floor when the budget ends.
    """

    def __init__(self, epochs: int, budget_s: float | None = None, start: float | None = None,
                 warmup: float = 0.03, floor: float = 0.01,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self._supports_tf_logs = True  # it never reads the logs: Keras need not copy them to numpy (a sync) per step
        self.epochs, self.budget_s, self.warmup, self.floor = max(int(epochs), 1), budget_s, warmup, floor
        self.clock = clock
        self.start = start if start is not None else clock()
        self.base: float | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.base = float(keras.backend.get_value(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def progress(self, batch: int) -> float:
        by_epoch = (self._epoch + batch / max(int(self.params.get("steps") or 1), 1)) / self.epochs
        if self.budget_s:
            by_epoch = max(by_epoch, (self.clock() - self.start) / self.budget_s)
        return min(by_epoch, 1.0)

    def rate(self, progress: float) -> float:
        base = self.base or 0.0
        if progress < self.warmup:
            return base * max(progress / self.warmup, 0.05)
        p = (progress - self.warmup) / max(1.0 - self.warmup, 1e-9)
        return base * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * p)))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        keras.backend.set_value(self.model.optimizer.learning_rate, self.rate(self.progress(batch)))


def lr_callbacks(schedule: str, monitor: str, epochs: int, budget_s: float | None,
                 start: float) -> list[keras.callbacks.Callback]:
    """The callbacks behind ``train.lr_schedule`` (shared by classifiers and detectors)."""
    if schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=2, min_lr=1e-6)]
    if schedule == "cosine":
        return [CosineDecay(epochs, budget_s, start=start)]
    return []


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` at its default epoch granularity, minus a per-step cost.

    Keras calls every callback's batch hooks once any callback has one (``CosineDecay``, ``TimeBudget``), and the
    stock hook then builds a ``tf.summary.scalar`` per log key per step that no writer records (``update_freq``
    "epoch" pushes none): about 2 ms a step on a 2-core CPU, 2 % of the quick start. Epoch summaries, the graph
    and profiling are unchanged.
    """

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.update_freq != "epoch" or self._should_trace:
            super().on_train_batch_end(batch, logs)
        elif self._should_write_train_graph:  # what the stock hook does once, without its scalars
            self._write_keras_model_train_graph()
            self._should_write_train_graph = False


@dataclass
class StandardCallbacks:
    """The callback set of every training loop, with its stateful members by name (what they report)."""

    history: HistoryCSV
    counter: ImageCounter
    best: KeepBest
    budget: TimeBudget | None
    callbacks: list[keras.callbacks.Callback]

    def roles(self) -> dict[str, keras.callbacks.Callback]:
        """The stateful callbacks by role, as ``engine.resume.ResumeState`` snapshots and restores them."""
        out: dict[str, keras.callbacks.Callback] = {"best_checkpoint": self.best, "image_counter": self.counter}
        if self.budget is not None:
            out["time_budget"] = self.budget
        for cb in self.callbacks:
            if isinstance(cb, keras.callbacks.EarlyStopping):
                out["early_stopping"] = cb
            elif isinstance(cb, keras.callbacks.ReduceLROnPlateau):
                out["plateau"] = cb
        return out


def standard_callbacks(train: Any, batch_size: int, history_path: str | Path, monitor: str, *,
                       loss_key: str | None = None, keys: list[tuple[str, float]] | None = None,
                       checkpoint: str | Path | None = None, start: float | None = None,
                       history_rows: list[dict[str, Any]] | None = None,
                       tensorboard: str | Path | None = None,
                       make_budget: Callable[..., TimeBudget] | None = None,
                       before_best: list[Any] | None = None, defer_checkpoint: bool = False) -> StandardCallbacks:
    """The one callback set-up (classifier and detector training): why one is that a rule added here
    (a divergence check, a budget, a schedule) reaches every task.

    ``train``: the config's ``train`` section (time budget, patience, LR schedule, epochs). ``monitor`` picks the
    best epoch (by ``keys``, default the monitor alone) and drives early stopping; ``loss_key`` drives the
    LR schedule (default: ``monitor``). ``checkpoint``: save the best model there (the caller reloads it);
    without one the best weights are restored in memory. ``start``: the clock the budget and cosine decay count
    from (a resumed run passes the time already spent). ``defer_checkpoint``: the checkpoint is written when
    ``best.flush()`` is called (by each resume snapshot) and at the end of training, not at every improvement.
    Order matters: the divergence check runs first, so no history row or checkpoint is written for a diverged epoch.
    """
    start = time.perf_counter() if start is None else start
    history, counter = HistoryCSV(history_path, rows=history_rows), ImageCounter(batch_size)
    best = KeepBest(monitor, keys=keys, path=checkpoint, restore=checkpoint is None, defer_write=defer_checkpoint)
    # before_best (e.g. EMA, val mAP) may change the weights or add log keys: the history records them too
    callbacks: list[keras.callbacks.Callback] = [StopOnNonFiniteLoss(), counter, *(before_best or []), history, best]
    if tensorboard is not None:
        callbacks.append(EpochTensorBoard(str(tensorboard)))
    budget = (make_budget or TimeBudget)(train.time_budget_s, start=start) if train.time_budget_s else None
    if budget:
        callbacks.append(budget)
    if train.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=direction(monitor),
                                                       patience=train.patience))
    lr_budget = None if make_budget is not None else train.time_budget_s
    callbacks += lr_callbacks(train.lr_schedule, loss_key or monitor, train.epochs, lr_budget, start)
    return StandardCallbacks(history, counter, best, budget, callbacks)
