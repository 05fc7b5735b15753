"""One lifecycle for every task: ``fit``, ``evaluate``, ``predict`` (export lives in ``kdefect.export``).

Loaded lazily so that TF-free parts (``engine.run``, ``engine.metrics``) can be
imported without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["evaluate", "fit", "predict"]
_HOME = {"fit": "trainer", "evaluate": "evaluator", "predict": "predictor"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(f"kdefect.engine.{_HOME[name]}"), name)
    raise AttributeError(f"module 'kdefect.engine' has no attribute {name!r}")
