"""Export formats, one module each: ``tflite`` (float32/float16/dynamic/INT8), ``edgetpu`` (report +
compiler), ``saved_model`` (bring-your-own models, SavedModel export), ``evaluate`` (prove the exported model).

The pure per-step functions are re-exported here; ``export_run`` chains them for ``kdefect tflite``.
"""

from __future__ import annotations

from kdefect.export.api import export_run
from kdefect.export.spec import ExportSpec
from kdefect.export.tflite import to_tflite
from kdefect.optimize import distill, prune, quantize_aware

__all__ = ["ExportSpec", "distill", "evaluate_tflite", "export_run", "prune", "quantize_aware", "to_tflite"]


def evaluate_tflite(*args, **kwargs):
    """See :func:`kdefect.export.evaluate.evaluate_tflite`."""
    from kdefect.export.evaluate import evaluate_tflite as _ev

    return _ev(*args, **kwargs)
