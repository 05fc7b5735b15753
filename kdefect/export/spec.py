"""``ExportSpec``: everything ``kdefect tflite`` can be asked, as one typed value instead of 20 keywords.

The CLI builds one from its flags; Python callers build one, or keep passing the same names as keywords to
``export_run`` (they are checked against the fields, so a typo fails instead of being ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.errors import ExportError


@dataclass(frozen=True)
class ExportSpec:
    """How to export: format and I/O, the optional optimisation steps (distill, prune, QAT), data and gates."""

    out: str | Path | None = None  # the .tflite path (default: RUN/export/model_<quantization>.tflite)
    mode: str = "int8"  # a name in export.tflite.EXPORT_MODES
    input_type: str = "uint8"
    output_type: str = "uint8"
    edgetpu: bool = False
    # optimisation steps, in the order they run: distillation, pruning, quantization-aware training
    distill_from: str | Path | None = None
    student: str | None = None
    distill_epochs: int = 5
    temperature: float = 4.0
    alpha: float = 0.5
    prune: float | None = None
    qat: bool = False
    epochs: int = 2
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4
    # data: INT8 calibration images, the run a bare model belongs to, another labelled folder
    calib_size: int = 200
    run: str | Path | None = None
    data: str | Path | None = None
    seed: int = 0
    # the device's unknown-defect gate, and whether a NOT READY run may be exported
    ood_gate: str = "msp"
    allow_unready: bool = False
    # integrity: sign the device artefacts with this Ed25519 private key; load a model file that holds code
    sign_key: str | Path | None = None
    trust_model: bool = False

    @classmethod
    def of(cls, spec: ExportSpec | None = None, **options: Any) -> ExportSpec:
        """``spec`` with ``options`` replacing its fields; an unknown option is an ExportError naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ExportError(f"unknown export option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
        return dataclasses.replace(spec or cls(), **options)

    def options(self) -> dict[str, Any]:
        """The fields as keywords."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
