"""Model optimisation before export: quantization-aware training, pruning, distillation (TF-MOT).

Each step takes and returns a plain tf_keras model so users can chain them in
their own code; ``kdefect.export.export_run`` chains them for the CLI.
"""

from __future__ import annotations

from kdefect.optimize.distill import distill
from kdefect.optimize.prune import model_sparsity, prune
from kdefect.optimize.qat import annotate_for_qat, quantize_aware

__all__ = ["annotate_for_qat", "distill", "model_sparsity", "prune", "quantize_aware"]
