"""The optimizer registry: ``train.optimizer`` names an entry, built with the phase's learning rate."""

from __future__ import annotations

from kdefect.core.registry import Registry
from kdefect.keras import keras

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.add("adam", lambda lr, weight_decay: keras.optimizers.Adam(lr))
OPTIMIZERS.add("adamw", lambda lr, weight_decay: keras.optimizers.AdamW(lr, weight_decay=weight_decay or 1e-4))
OPTIMIZERS.add("sgd", lambda lr, weight_decay: keras.optimizers.SGD(lr, momentum=0.9))


def build_optimizer(name: str, lr: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """A fresh optimizer ``name`` (ConfigError with the closest name on a typo)."""
    return OPTIMIZERS.get(name)(lr, weight_decay)
