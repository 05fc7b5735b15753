"""Model-agnostic saliency for one image: settings, dispatch and cost.

Why one entry point: the CLI, the decision re-run, the report and the
faithfulness benchmark must all compute "LIME" or "SHAP" with the same,
documented settings and seed, so their figures describe the same thing.
Every method returns a signed (H, W) map at the model's input size (positive
= evidence *for* the explained class); ``display`` turns it into the 0..1
overlay.  LIME and SHAP are optional (``pip install 'kdefect[explain]'``) and
imported only when asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdefect.errors import ModelError
from kdefect.trust.saliency_settings import CHUNK, ExplainSettings, hidden, require

log = logging.getLogger(__name__)

METHODS = ("gradcam", "lime", "shap", "occlusion")
AGNOSTIC = ("lime", "shap", "occlusion")  # run on any ProbsFn, the .tflite included



@dataclass
class Saliency:
    """One explanation: the signed map, what was explained and what it cost."""

    method: str
    heat: np.ndarray
    class_index: int
    seconds: float
    model_images: int


def occlusion(fn: Any, image: np.ndarray, cls: int, settings: ExplainSettings) -> np.ndarray:
    """Drop of P(cls) when a square window is hidden, averaged over the windows covering each pixel."""
    x = np.asarray(image, np.float32)
    h, w = x.shape[:2]
    patch = settings.patch or max(2, min(h, w) // 4)
    stride = settings.stride or max(1, patch // 4)
    fill = hidden(x, settings)
    base = float(fn(x[None])[0, cls])
    ys = list(range(0, max(h - patch, 0) + 1, stride))
    xs = list(range(0, max(w - patch, 0) + 1, stride))
    if ys[-1] + patch < h:
        ys.append(h - patch)
    if xs[-1] + patch < w:
        xs.append(w - patch)
    windows = [(y, x0) for y in ys for x0 in xs]
    heat, count = np.zeros((h, w)), np.zeros((h, w))
    for i in range(0, len(windows), CHUNK):
        chunk = windows[i:i + CHUNK]
        batch = np.repeat(x[None], len(chunk), 0)
        for j, (y, x0) in enumerate(chunk):
            batch[j, y:y + patch, x0:x0 + patch] = fill[y:y + patch, x0:x0 + patch]
        drops = base - fn(batch)[:, cls]
        for (y, x0), d in zip(chunk, drops):
            heat[y:y + patch, x0:x0 + patch] += d
            count[y:y + patch, x0:x0 + patch] += 1
    return (heat / np.maximum(count, 1)).astype(np.float32)


def explain_one(method: str, fn: Any, image: np.ndarray, cls: int, settings: ExplainSettings,
                keras_model: Any = None) -> Saliency:
    """One signed saliency map of ``method`` for class ``cls``; ``keras_model`` only for Grad-CAM."""
    if method not in METHODS:
        raise ModelError(f"explanation method '{method}' is unknown; use one of {', '.join(METHODS)}.")
    if method in ("lime", "shap"):  # import before the clock starts: the cost is per explanation, not per process
        require("lime.lime_image" if method == "lime" else "shap")
    before = fn.images if fn is not None else 0
    t0 = time.perf_counter()
    if method == "gradcam":
        if keras_model is None:
            raise ModelError("Grad-CAM needs the Keras model's gradients: pass a run folder or a .keras file, "
                             "or use --method lime, shap or occlusion for a .tflite.")
        from kdefect.trust.explain import gradcam

        heat = gradcam(keras_model, np.asarray(image, np.float32)[None], cls)[0]
    elif method == "lime":
        from kdefect.trust.explain_lime import lime_map

        heat = lime_map(fn, image, cls, settings)
    elif method == "shap":
        from kdefect.trust.explain_shap import shap_map

        heat = shap_map(fn, image, cls, settings)
    else:
        heat = occlusion(fn, image, cls, settings)
    used = (fn.images - before) if fn is not None else 0
    return Saliency(method, np.asarray(heat, np.float32), int(cls), time.perf_counter() - t0, used)


def display(heat: np.ndarray) -> np.ndarray:
    """The positive evidence scaled to 0..1 (what overlays and the pointing game look at)."""
    pos = np.maximum(np.asarray(heat, np.float32), 0)
    mx = float(pos.max())
    return pos / mx if mx > 0 else pos


def cost_of(items: list[Saliency]) -> dict[str, float]:
    """Mean seconds and model images per explained image (what an explanation costs)."""
    if not items:
        return {"n": 0}
    return {"n": len(items), "s_per_image": round(float(np.mean([s.seconds for s in items])), 3),
            "model_images_per_image": round(float(np.mean([s.model_images for s in items])), 1)}
