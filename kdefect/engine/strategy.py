"""``tf.distribute`` strategy from a config name.

The global batch size in the config is split across replicas by tf.data's
auto-sharding, so the same config scales from a laptop to a multi-GPU box
and to several machines (``multi_worker``, from ``TF_CONFIG``; see
docs/scale.md) without changing its meaning.  The learning rate is not
rescaled automatically: with N times the global batch, scale it by N yourself
(the linear scaling rule, with a warm-up; ``lr_schedule: cosine`` has one).
"""

from __future__ import annotations

import logging

from kdefect.errors import ConfigError
from kdefect.keras import tf

log = logging.getLogger(__name__)


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Return the strategy named in ``train.strategy``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    elif name == "multi_worker":
        from kdefect.engine.multiworker import worker_role

        worker_role()  # a clear error when TF_CONFIG is missing, before TF's own
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        strategy = _tpu_strategy()
    else:
        raise ConfigError(f"train.strategy: unknown strategy '{name}'. "
                          "Use default, mirrored, one_device, multi_worker or tpu.")
    log.info("distribution strategy %s with %d replica(s)", name, strategy.num_replicas_in_sync)
    return strategy


def _tpu_strategy() -> tf.distribute.Strategy:
    """TPUStrategy on the TPU named by $KDEFECT_TPU (empty: the local / Colab TPU).  Untested here: no TPU."""
    import os

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("KDEFECT_TPU", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ConfigError(f"train.strategy tpu: no TPU found ({exc}). Set $KDEFECT_TPU to its name or address, "
                          "or use another strategy.") from exc
    return tf.distribute.TPUStrategy(resolver)
