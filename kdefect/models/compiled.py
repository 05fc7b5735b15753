"""Create a compiled model's lazily built training state before its first step, so ``fit`` traces it once.

Why: ``tf.function`` traces a function twice when its first call creates variables (once creating them, once
more without). A tf_keras train step creates the optimizer's slots and the loss trackers on its first call, so
every ``fit`` paid for a second trace of the whole train step (a YOLOv8-xs first epoch: 33.5 s against 28.8 s on a
2-core CPU, tools/results/first_step.md). Building both up front leaves one trace (tests/models/test_compiled.py).
"""

from __future__ import annotations

from typing import Any

from kdefect.keras import keras, tf


def _loss_structure(model: keras.Model) -> Any:
    """Placeholder predictions shaped like what the model's loss receives (only the structure is read)."""
    if isinstance(model.loss, dict):  # keras-cv detectors: the loss keys, not the raw outputs, reach the loss
        return {k: tf.zeros((1, 1)) for k in model.loss}
    return tf.nest.map_structure(lambda _: tf.zeros((1, 1)), model.output)


def build_training_state(model: keras.Model) -> None:
    """Build the optimizer's slot variables and the compiled loss's trackers of a freshly compiled ``model``."""
    if hasattr(model.optimizer, "build"):  # a no-op once built
        model.optimizer.build(model.trainable_variables)
    losses = getattr(model, "compiled_loss", None)
    if losses is not None and not losses.built:
        losses.build(_loss_structure(model))
