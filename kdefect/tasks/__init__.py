"""Tasks: backbone + head (+ loss and metrics) for one problem type.

``classify`` builds image classifiers, ``detect`` object detectors. Submodules
are imported on use so ``import kdefect.tasks`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_classifier": "kdefect.tasks.classify",
    "build_classifier_from_config": "kdefect.tasks.classify",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kdefect.tasks' has no attribute {name!r}")
