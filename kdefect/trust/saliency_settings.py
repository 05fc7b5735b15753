"""The settings and helpers every explanation method shares (kept apart so each method module can import them
without importing the dispatcher in ``saliency``, which imports the methods lazily)."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kdefect.errors import ModelError

CHUNK = 32  # perturbed images handed to the model function per call (it batches or loops them itself)


@dataclass(frozen=True)
class ExplainSettings:
    """The documented knobs (docs/trust.md); the defaults keep one 128 px INT8 explanation under ~10 s on 2 cores.

    ``segments``/``compactness``: SLIC superpixels for LIME.  ``lime_samples``:
    perturbed images LIME fits its linear model on.  ``shap_evals``: model
    evaluations of SHAP's partition explainer.  ``masker``: what hides a
    region for SHAP, occlusion and the deletion curve: ``blur`` (Gaussian,
    ``blur_sigma`` px; 0 = image side / 16), ``mean`` (the image's mean
    colour) or ``zero``; LIME hides a superpixel with the image's mean grey
    (``explain_lime`` says why not its own default).  ``patch``/``stride``: occlusion window (0 = side / 4 and
    a quarter of that: a window smaller than the defect shows nothing when the
    rest of the defect still decides the class).  ``batch``: images per interpreter invoke; 1 is the device's
    exact batch-1 invoke (32 saved ~17% on a 128 px tiny INT8 CNN,
    tools/results/explain.md).  ``drise_masks``/``drise_cells``/``drise_keep``: D-RISE on a detector
    (``explain_drise``): random masks, grid cells per side, and the chance a cell is kept.
    """

    seed: int = 0
    segments: int = 50
    compactness: float = 10.0
    lime_samples: int = 300
    shap_evals: int = 500
    masker: str = "blur"
    blur_sigma: float = 0.0
    patch: int = 0
    stride: int = 0
    batch: int = 1
    drise_masks: int = 1000
    drise_cells: int = 16
    drise_keep: float = 0.5

    def __post_init__(self) -> None:
        if self.masker not in ("blur", "mean", "zero"):
            raise ModelError(f"masker '{self.masker}' is unknown; use blur, mean or zero.")
        if self.lime_samples < 10 or self.shap_evals < 10 or self.segments < 2:
            raise ModelError("explain settings: lime_samples and shap_evals must be >= 10 and segments >= 2.")
        if self.drise_masks < 1 or self.drise_cells < 1 or not 0 < self.drise_keep < 1:
            raise ModelError("explain settings: D-RISE needs masks >= 1, cells >= 1 and 0 < keep < 1.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require(module: str) -> Any:
    """Import an optional explainer library or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"the '{module.split('.')[0]}' package is needed for this explanation method: "
                         "pip install 'kdefect[explain]'") from exc


def hidden(image: np.ndarray, settings: ExplainSettings) -> np.ndarray:
    """The image with everything hidden by the masker (what a removed region is replaced with)."""
    x = np.asarray(image, np.float32)
    if settings.masker == "zero":
        return np.zeros_like(x)
    if settings.masker == "mean":
        return np.broadcast_to(x.reshape(-1, x.shape[-1]).mean(0), x.shape).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    sigma = settings.blur_sigma or max(1.0, x.shape[0] / 16)
    return gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest").astype(np.float32)
