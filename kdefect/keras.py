"""The one place that chooses the Keras implementation.

TF-MOT only works with the Keras 2 API (``tf_keras``) and keras-cv builds on
``tf_keras`` only when ``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow or
keras-cv is first imported.  Every other kdefect module takes ``keras`` (and
``tf``) from here, so the switch is set exactly once and always first.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "keras_cv", "tf", "tfmot"]


def keras_cv():  # pragma: no cover - trivial
    """Import keras-cv lazily (slow import) after the switch is set."""
    import keras_cv as _kcv

    return _kcv


def tfmot():  # pragma: no cover - trivial
    """Import tensorflow-model-optimization lazily after the switch is set."""
    import tensorflow_model_optimization as _tfmot

    return _tfmot
