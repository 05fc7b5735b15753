"""The one place that chooses the Keras implementation.

TF-MOT only works with the Keras 2 API (``tf_keras``) and keras-cv builds on
``tf_keras`` only when ``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow or
keras-cv is first imported.  Every other kdefect module takes ``keras`` (and
``tf``) from here, so the switch is set exactly once and always first.

The same goes for TensorFlow's log noise (oneDNN / CUDA banners, ``failed call
to cuInit`` on a CPU machine, "Assets written to"): ``TF_CPP_MIN_LOG_LEVEL``
defaults to 3 here, the banners printed while TensorFlow loads (before absl
reads that level) are dropped, and the ``tensorflow`` / ``absl`` Python loggers
only pass errors.  ``kdefect -v`` (or ``TF_CPP_MIN_LOG_LEVEL=0``) shows it all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

os.environ["TF_USE_LEGACY_KERAS"] = "1"
_TF_LOG_LEVEL = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_dropped(drop: bool) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (C++ writes bypass Python's ``sys.stderr``) for the block."""
    if not drop:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _stderr_dropped(_TF_LOG_LEVEL != "0"):
    import tensorflow as tf
    import tf_keras as keras

if _TF_LOG_LEVEL != "0":
    for _name in ("tensorflow", "absl"):
        logging.getLogger(_name).setLevel(logging.WARNING if _TF_LOG_LEVEL == "1" else logging.ERROR)

__all__ = ["keras", "keras_cv", "tf", "tfmot"]


def keras_cv():  # pragma: no cover - trivial
    """Import keras-cv lazily (slow import) after the switch is set."""
    import keras_cv as _kcv

    return _kcv


def tfmot():  # pragma: no cover - trivial
    """Import tensorflow-model-optimization lazily after the switch is set."""
    import tensorflow_model_optimization as _tfmot

    return _tfmot
