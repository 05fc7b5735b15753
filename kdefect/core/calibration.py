"""The calibration file contract: ``<run>/calibration.json``, how it is read and how it reaches the sidecar.

``trust.calibrate`` writes the file; ``engine`` (evaluate, predict), ``export`` and the CLI read it. The reader
lives here, numpy-only, so reading a calibration never needs scipy or the trust layer.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kdefect.utils.io import sha256_file

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T), row by row."""
    z = np.asarray(logits, np.float64) / float(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def load_calibration(run: Any) -> dict[str, Any] | None:
    """The run's ``calibration.json`` when it belongs to the current ``model.keras``; None (with a warning) if not."""
    if not (run.path / CALIBRATION_FILE).is_file():
        log.warning("%s has no calibration.json: temperature 1 and no review/OOD thresholds. "
                    "Run `kdefect calibrate %s` first.", run.path, run.path)
        return None
    cal = run.read_json(CALIBRATION_FILE)
    if cal.get("model_sha256") and run.model_path.is_file() and cal["model_sha256"] != sha256_file(run.model_path):
        log.warning("calibration.json of %s was made for another model.keras: not used. Run `kdefect calibrate` "
                    "again.", run.path)
        return None
    return cal


def thresholds_from(cal: dict[str, Any] | None) -> dict[str, Any]:
    """A calibration in the sidecar's ``thresholds`` layout (device-computable OOD gate only)."""
    th: dict[str, Any] = {"review_below": 0.0, "temperature": 1.0}
    if cal:
        th.update({k: cal[k] for k in ("temperature", "review_below", "decision") if k in cal})
        if "device_ood" in cal:
            th["ood"] = cal["device_ood"]
    return th
