"""TF-free on-device runtime.

Everything below ``kdefect.edge`` imports only numpy, Pillow, a TFLite interpreter (LiteRT, or tflite-runtime
on older devices) and ``kdefect.core``: never TensorFlow, and nothing from the rest of kdefect (an import-linter
contract in pyproject.toml checks it).

The contracts the device shares with training (sidecar, decision rule, kNN bank, decision log, detection decoder)
moved to ``kdefect.core``; their old paths (``kdefect.edge.sidecar`` and so on) stay importable as aliases.
"""

from __future__ import annotations

import sys

from kdefect.core import decision_log, decisions, detect_decode, knn, sidecar

__all__ = ["decision_log", "decisions", "detect_decode", "knn", "sidecar"]

for _module in (decision_log, decisions, detect_decode, knn, sidecar):
    sys.modules.setdefault(f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}", _module)
