"""SHAP (Lundberg & Lee 2017) through the maintained ``shap`` package.

``shap.Explainer`` with a ``shap.maskers.Image`` masker picks the partition
explainer: it hides a hierarchy of image rectangles (Owen values), so the
cost is ``shap_evals`` model calls whatever the image size.  Its only
randomness is a tie-breaker drawn from numpy's *global* generator (quantised
INT8 outputs tie often, and the ties decide which regions get refined within
the budget), so the global generator is seeded for the call and restored
after it: the same seed gives the same map.  The masker gets the *hidden* image as an
array (kdefect's blur / mean / zero, ``saliency.hidden``) instead of shap's
``"blur(k,k)"`` string, which needs OpenCV.  The per-channel values are
summed into one map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdefect.trust.saliency_settings import CHUNK, ExplainSettings, hidden, require


def shap_map(fn: Any, image: np.ndarray, cls: int, settings: ExplainSettings) -> np.ndarray:
    """Signed (H, W) map of SHAP values for class ``cls`` (sum over channels)."""
    shap = require("shap")
    x = np.asarray(image, np.float32)
    masker = shap.maskers.Image(hidden(x, settings), x.shape)
    explainer = shap.Explainer(lambda b: fn(b)[:, [int(cls)]], masker, seed=settings.seed)
    state = np.random.get_state()
    np.random.seed(settings.seed)
    try:
        values = explainer(x[None], max_evals=settings.shap_evals, batch_size=CHUNK, silent=True).values
    finally:
        np.random.set_state(state)
    return np.asarray(values, np.float32).reshape(*x.shape, -1)[..., 0].sum(-1)
