"""Resumable training: ``kdefect fit --resume RUN`` continues a run that was killed mid-way.

Why not ``keras.callbacks.BackupAndRestore`` alone: it keeps the weights, the
optimizer and the epoch of one ``model.fit`` call, but a kdefect run is up to
two fit calls (head, then fine-tune) and its outcome also depends on the best
checkpoint, early stopping, the plateau / cosine schedule, the time budget
already spent, the history and the RNG.  ``ResumeState`` uses the same
mechanism (a ``tf.train.Checkpoint`` of model + optimizer at an epoch end, once
every ``train.snapshot_every_s`` seconds) and adds all of that to ``resume/state.json``, written atomically *after* the
checkpoint it names, so a ``kill -9`` at any moment leaves a consistent pair.
The folder is removed once the run is complete.
"""

from __future__ import annotations

import csv
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.run import FAILED, MANIFEST, RunDir
from kdefect.engine.callbacks import KeepBest
from kdefect.errors import ConfigError, DataError
from kdefect.keras import keras, tf
from kdefect.tasks.base import get_task
from kdefect.utils.io import read_json, write_json

log = logging.getLogger(__name__)

STATE_DIR = "resume"
STATE_FILE = "state.json"
# callback attributes that make up its state; "fit" ones are reset by Keras at every fit call (phase)
_PERSISTENT = {"best_checkpoint": ("best", "best_epoch", "_best_score"), "time_budget": ("exhausted",),
               "image_counter": ("images", "seconds", "warm_images", "warm_seconds")}
_PER_FIT = {"early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
            "plateau": ("wait", "best", "cooldown_counter")}
_IGNORED_KEYS = {"name", "runs_dir"}  # where the run lives, not how it trains


@dataclass
class ResumePoint:
    """What ``state.json`` says about the last completed epoch."""

    epoch: int
    phase: int
    checkpoint: Path
    train_seconds: float
    learning_rate: float | None
    phase_stopped: bool
    done: bool
    optimizer_steps: int
    callbacks: dict[str, dict[str, Any]]
    rng: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "subsample":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Keys whose value in ``given`` differs from the run's resolved config (``auto`` matches any value)."""
    a, b = _flatten(saved), _flatten(given)
    return sorted(k for k in set(a) | set(b)
                  if k not in _IGNORED_KEYS and b.get(k) != "auto" and a.get(k) != b.get(k))


def _read_history(path: Path, epochs: int) -> list[dict[str, Any]]:
    """The first ``epochs`` rows of history.csv (later rows belong to an epoch the crash cut short)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if v in (None, ""):
                    row[k] = None
                else:
                    try:
                        row[k] = int(v) if k == "epoch" else float(v)
                    except ValueError:
                        row[k] = v
            rows.append(row)
    return [r for r in rows if r.get("epoch") is not None and r["epoch"] <= epochs]


def resume_role(run_path: str | Path) -> tuple[Any, Any]:
    """(this worker's role, its strategy) when the run trains with ``train.strategy: multi_worker``, else (None, None).

    Why the strategy is made here, before anything else: ``MultiWorkerMirroredStrategy`` must exist before the
    first TF op.  Every worker of the restarted job runs ``fit --resume RUN`` on the chief's run folder; they all
    restore the same snapshot, so their epoch, budget and early-stopping state agree (the job Keras'
    ``BackupAndRestore`` would restore, plus kdefect's own state).
    """
    if RunDir.open(run_path, allow_failed=True).config().train.strategy != "multi_worker":
        return None, None
    from kdefect.engine.multiworker import worker_role
    from kdefect.engine.strategy import make_strategy

    return worker_role(), make_strategy("multi_worker")


def open_for_resume(run_path: str | Path, cfg: Any | None = None,
                    read_only: bool = False) -> tuple[Any, Any, ResumePoint]:
    """(RunDir, the run's config, where to continue); refuses a complete run or a different config.

    ``read_only``: a non-chief worker of a multi-worker run, which must not touch the chief's folder.
    """
    run = RunDir.open(run_path, allow_failed=True)  # a run stopped by an error is what resume is for
    saved = run.config()
    if (run.path / MANIFEST).is_file():
        raise DataError(f"run '{run.path}' is complete (it has {MANIFEST}); there is nothing to resume. "
                        "Start a new run with `kdefect fit`.")
    if get_task(saved.task).train is not None:  # its own training loop keeps no snapshot of the engine's
        raise ConfigError(f"run '{run.path}' is a {saved.task!r} run; --resume supports classification runs only.")
    if cfg is not None:
        diff = config_differences(saved.to_dict(), cfg.to_dict())
        if diff:
            raise ConfigError(f"cannot resume '{run.path}': the config differs from the run's config.yaml in "
                              f"{', '.join(diff)}. Resume without --config/--set, or start a new run.")
    state_path = run.path / STATE_DIR / STATE_FILE
    if not state_path.is_file():
        raise DataError(f"run '{run.path}' has no resume point ({STATE_DIR}/{STATE_FILE}): it stopped before its "
                        "first snapshot (the first epoch end after train.snapshot_every_s="
                        f"{saved.train.snapshot_every_s:g} s of training). Start it again with `kdefect fit`.")
    s = read_json(state_path)
    point = ResumePoint(epoch=int(s["epoch"]), phase=int(s["phase"]), checkpoint=run.path / STATE_DIR / s["checkpoint"],
                        train_seconds=float(s["train_seconds"]), learning_rate=s.get("learning_rate"),
                        phase_stopped=bool(s.get("phase_stopped")), done=bool(s.get("done")),
                        optimizer_steps=int(s.get("optimizer_steps", 0)),
                        callbacks=s.get("callbacks", {}), rng=s.get("rng", {}))
    if not point.checkpoint.with_name(point.checkpoint.name + ".index").is_file():
        raise DataError(f"the resume checkpoint '{point.checkpoint}' is missing; the run cannot be resumed. "
                        "Start it again with `kdefect fit`.")
    point.history = _read_history(run.path / "history.csv", point.epoch)
    if (failed := run.path / FAILED).is_file() and not read_only:  # resuming is the fix: the run is live again
        log.info("run %s had stopped on an error (%s); resuming clears the mark", run.path, failed.name)
        failed.unlink()
    log.info("resuming %s after epoch %d of %d (%.0f s of training already spent)", run.path, point.epoch,
             saved.train.epochs, point.train_seconds)
    return run, saved, point


def load_run_index(run: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """The run's data index and split rebuilt from its split lists (the data is not re-indexed or re-split)."""
    from kdefect.data.sources import DatasetIndex
    from kdefect.data.split import load_split

    classes, _ = run.classes()
    lists = load_split(run.path)
    paths: list[str] = []
    labels: list[int] = []
    split: dict[str, np.ndarray] = {}
    for name, (p, names) in lists.items():
        split[name] = np.arange(len(paths), len(paths) + len(p))
        paths += p
        labels += [classes.index(n) for n in names]
    skipped: list[tuple[str, str]] = []
    if (run.path / "skipped.csv").is_file():
        with open(run.path / "skipped.csv", newline="", encoding="utf-8") as fh:
            skipped = [(r["path"], r["reason"]) for r in csv.DictReader(fh)]
    root = (run.path / "split" / "root.txt").read_text(encoding="utf-8").strip()
    return DatasetIndex(Path(root), classes, paths, np.asarray(labels, int), skipped=skipped), split


def _rng_state() -> dict[str, Any]:
    v, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"python": [v, list(state), gauss], "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "tf": tf.random.get_global_generator().state.numpy().tolist()}


def _set_rng_state(s: dict[str, Any]) -> None:
    if "python" in s:
        v, state, gauss = s["python"]
        random.setstate((v, tuple(state), gauss))
    if "numpy" in s:
        name, keys, *rest = s["numpy"]
        np.random.set_state((name, np.asarray(keys, np.uint32), *rest))
    if "tf" in s:
        tf.random.get_global_generator().state.assign(np.asarray(s["tf"], np.int64))


class ResumeState(keras.callbacks.Callback):
    """Snapshot model, optimizer, callback states, time spent and RNG at epoch ends (keep it last).

    Last in the callback list, so its snapshot sees every other callback's update for the epoch.
    ``every_s``: snapshot at the first epoch end at least this many seconds after the last snapshot, and always at
    the last epoch of a phase and when training stops early (0: every epoch). Why: a snapshot costs a checkpoint
    write (tens of ms even for a tiny model), so with one-second epochs snapshotting each one was about 3 % of the
    run, while a crash loses at most ``every_s`` plus one epoch. The best-epoch checkpoint (``KeepBest`` with
    ``defer_write``) is flushed with each snapshot, so the pair on disk always agrees.
    """

    def __init__(self, run_path: Path, start: float, stateful: dict[str, keras.callbacks.Callback],
                 point: ResumePoint | None = None, every_s: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.folder = Path(run_path) / STATE_DIR
        self.start = start
        self.stateful = stateful
        self.point = point
        self.every_s = every_s
        self.clock = clock
        self._saved_at = clock()
        self.phase = 0
        self._restored = False
        self._same_phase = False
        self._fit_restored = False
        self._last: Path | None = point.checkpoint if point else None
        self._ckpt: tuple[Any, Any, Any] | None = None  # (model, optimizer, their tf.train.Checkpoint)

    # ---- saving ------------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        stopped = bool(self.model.stop_training)
        last = epoch + 1 >= int(self.params.get("epochs") or 0)  # the phase's last epoch
        if stopped or last or self.every_s <= 0 or self.clock() - self._saved_at >= self.every_s:
            self.save(epoch + 1, phase_stopped=stopped)

    def save(self, epoch: int, phase_stopped: bool = False, done: bool = False) -> None:
        """Best checkpoint, then the snapshot (unless ``done``: the weights are the last epoch's), then the state
        naming it: each file is whole before the one that refers to it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if isinstance(best := self.stateful.get("best_checkpoint"), KeepBest):
            best.flush()
        if done and self._last is not None:
            prefix = str(self._last)  # never rewrite the checkpoint the current state.json names
        else:
            prefix = self._checkpoint().write(str(self.folder / f"epoch-{epoch:04d}"))
        lr = self.model.optimizer.learning_rate
        state = {"epoch": epoch, "phase": self.phase, "checkpoint": Path(prefix).name,
                 "train_seconds": round(time.perf_counter() - self.start, 3),
                 "learning_rate": None if callable(lr) else float(keras.backend.get_value(lr)),
                 "phase_stopped": phase_stopped, "done": done, "rng": _rng_state(),
                 "optimizer_steps": int(self.model.optimizer.iterations.numpy()),
                 "callbacks": {name: {a: getattr(cb, a, None) for a in {**_PERSISTENT, **_PER_FIT}[name]}
                               for name, cb in self.stateful.items()}}
        write_json(self.folder / STATE_FILE, state)  # after the checkpoint it names: the pair is always whole
        if self._last is not None and self._last.name != Path(prefix).name:
            for f in self.folder.glob(self._last.name + ".*"):
                f.unlink(missing_ok=True)
        self._last = Path(prefix)
        self._saved_at = self.clock()

    def _checkpoint(self) -> Any:
        """One Checkpoint per (model, optimizer): building one every epoch made each snapshot about 50 % dearer
        (tools/results/overheads.md).  A new phase compiles a new optimizer, which gets its own."""
        if self._ckpt is None or self._ckpt[0] is not self.model or self._ckpt[1] is not self.model.optimizer:
            self._ckpt = (self.model, self.model.optimizer,
                          tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer))
        return self._ckpt[2]

    def finish(self, epoch: int) -> None:
        """Mark training done, so a crash during evaluation resumes straight to it."""
        if self.model is not None:
            self.save(epoch, done=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---- restoring ---------------------------------------------------------------------------------------
    def restore_persistent(self) -> None:
        """Callback state kept across fit calls (best checkpoint, budget, counters), before training starts."""
        if self.point is None:
            return
        for name, cb in self.stateful.items():
            if name in _PERSISTENT:
                _assign(cb, self.point.callbacks.get(name, {}))

    def restore_model(self, model: keras.Model, phase: int, phase_lr: float, schedule: str) -> None:
        """Weights always; optimizer state and LR only when continuing the phase the snapshot was taken in."""
        if self.point is None or self._restored:
            return
        self._restored = True
        same_phase = phase == self.point.phase
        if same_phase:
            model.optimizer.build(model.trainable_variables)
            tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(str(self.point.checkpoint)).expect_partial()
            lr = phase_lr if schedule == "cosine" or self.point.learning_rate is None else self.point.learning_rate
            keras.backend.set_value(model.optimizer.learning_rate, lr)
        else:
            tf.train.Checkpoint(model=model).read(str(self.point.checkpoint)).expect_partial()
        _set_rng_state(self.point.rng)
        self._same_phase = same_phase

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        point = self.point
        if point is not None and self._same_phase and not self._fit_restored:
            self._fit_restored = True  # after the other callbacks reset themselves for this fit call
            for name, cb in self.stateful.items():
                if name in _PER_FIT:
                    _assign(cb, point.callbacks.get(name, {}))


def _assign(cb: keras.callbacks.Callback, values: dict[str, Any]) -> None:
    for attr, v in values.items():
        setattr(cb, attr, tuple(v) if isinstance(v, list) else v)
