"""kdefect: deep-learning defect inspection for manufacturing.

Importing ``kdefect`` stays light (no TensorFlow): the training API below is
loaded on first use, so ``kdefect.edge`` runs on devices without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_classifier": "kdefect.tasks.classify",
    "load_dataset": "kdefect.data",
    "fit": "kdefect.engine",
    "evaluate": "kdefect.engine",
    "predict": "kdefect.engine",
    "load_config": "kdefect.config",
    "Config": "kdefect.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kdefect' has no attribute {name!r}")
