"""``tf.distribute`` strategy from a config name.

The global batch size in the config is split across replicas by tf.data's
auto-sharding, so the same config scales from a laptop to a multi-GPU box
(and later to multi-worker training) without changing its meaning.
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
    else:
        raise ConfigError(f"train.strategy: unknown strategy '{name}'. Use default, mirrored or one_device.")
    log.info("distribution strategy %s with %d replica(s)", name, strategy.num_replicas_in_sync)
    return strategy
