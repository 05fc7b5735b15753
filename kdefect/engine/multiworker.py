"""Multi-worker training on ``tf.distribute.MultiWorkerMirroredStrategy`` (see docs/scale.md).

Why these pieces, following the TF multi-worker guide:
- Roles come from the standard ``TF_CONFIG``; the chief (task ``chief``, or
  ``worker`` 0 when the cluster has no chief) writes the run folder.  Every
  other worker runs the same steps (the collectives need it) in a temporary
  folder of its own, deleted at the end, so two writers never collide.
- Every decision that ends an epoch loop must be the same on every worker, or
  one waits forever in an all-reduce: validation metrics (early stopping,
  plateau LR, best checkpoint) are already reduced across workers by Keras; the
  wall-clock time budget is agreed here with an all-reduce at each epoch end.
- After training, the chief evaluates, calibrates and exports a plain
  (non-distributed) copy of the model, so nothing after ``fit`` needs the workers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.errors import ConfigError
from kdefect.keras import keras, tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in a ``TF_CONFIG`` cluster."""

    task_type: str
    task_id: int
    num_workers: int  # chief + workers
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0 and not self.has_chief)


def worker_role(tf_config: str | None = None) -> WorkerRole:
    """Parse ``TF_CONFIG`` (argument, else the environment); ConfigError when it is missing or malformed."""
    text = tf_config if tf_config is not None else os.environ.get("TF_CONFIG", "")
    try:
        conf = json.loads(text) if text else {}
        cluster, task = conf["cluster"], conf["task"]
        role = WorkerRole(str(task["type"]), int(task["index"]),
                          len(cluster.get("chief", [])) + len(cluster.get("worker", [])), "chief" in cluster)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            "train.strategy multi_worker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}} '
            f"(set on every machine, each with its own index; see docs/scale.md). Got: {text!r} ({exc})") from exc
    if role.task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type '{role.task_type}' is not trained by kdefect; use chief or worker.")
    return role


def worker_scratch(role: WorkerRole) -> Path:
    """A temporary runs folder for a non-chief worker (the guide's 'write to a temporary directory')."""
    return Path(tempfile.mkdtemp(prefix=f"kdefect-{role.task_type}{role.task_id}-"))


def is_multi_worker(strategy: Any) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def agree_any(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """True on every worker when ``flag`` is True on any one (an all-reduce: every worker must call it)."""
    def step() -> tf.Tensor:
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0 if flag else 0.0))

    total = strategy.experimental_local_results(strategy.run(tf.function(step)))[0]
    return float(total) > 0


class AgreedTimeBudget(keras.callbacks.Callback):
    """Stop when any worker ran past ``seconds``, decided together at epoch end (never mid-epoch).

    Why not ``TimeBudget``: it stops after the batch where *this* worker's clock
    ran out, and the other workers would wait in the next step's all-reduce.
    """

    def __init__(self, seconds: float, strategy: tf.distribute.Strategy, start: float | None = None) -> None:
        super().__init__()
        self.seconds, self.strategy = float(seconds), strategy
        self.start = start if start is not None else time.perf_counter()
        self.exhausted = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if agree_any(self.strategy, time.perf_counter() - self.start > self.seconds):
            self.exhausted = True
            self.model.stop_training = True
            log.info("time budget of %.0f s reached on a worker: all workers stop after epoch %d", self.seconds,
                     epoch + 1)


def local_copy(model: keras.Model, checkpoint: Path) -> keras.Model:
    """A non-distributed copy of the trained model (the best checkpoint when there is one) for the chief's
    evaluation and export, which must not wait for the other workers."""
    if checkpoint.is_file():
        return keras.models.load_model(checkpoint, compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.keras"
        model.save(path)
        return keras.models.load_model(path, compile=False)
