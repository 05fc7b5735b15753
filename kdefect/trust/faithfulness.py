"""Is a saliency map faithful to the model?  Measured, not assumed.

Two families of checks:

* **localisation** on images with known defect boxes: the pointing game
  (is the map's peak inside a box) and the share of the positive heat inside
  the boxes (``explain.heat_in_boxes``), both compared with the box's area;
* **causal** checks that need no boxes (Petsiuk et al., RISE, BMVC 2018):
  *deletion* hides the pixels in the map's order, most important first, and
  follows P(class); a faithful map makes it fall fast (low AUC).  *Insertion*
  starts from a blurred image and restores pixels in the same order (high
  AUC is good).  Both use a Gaussian blur of the image as the substrate:
  RISE deletes to black, but on steel a black region *is* a dark defect to
  an inspection model (measured: with black, no method beat a random order
  on more than 45% of synthetic images; tools/results/explain.md).  A random
  order is the baseline every method must beat.

TF-free: the model is any ``model_fn.ProbsFn`` (the INT8 ``.tflite`` in the benchmark).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdefect.trust.explain import heat_in_boxes
from kdefect.trust.saliency import ExplainSettings, display, hidden

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def pixel_order(heat: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most salient first; ties (a LIME superpixel is flat) broken at random, seeded."""
    h = np.asarray(heat, np.float64).ravel()
    tie = np.random.default_rng(seed).random(h.size)
    return np.lexsort((tie, -h))


def causal_curves(fn: Any, image: np.ndarray, cls: int, heat: np.ndarray, steps: int = 32,
                  seed: int = 0, blur_sigma: float = 0.0) -> dict[str, Any]:
    """Deletion and insertion curves of P(cls) over ``steps`` + 1 points and their AUC (trapezoid, x in 0..1)."""
    x = np.asarray(image, np.float32)
    hgt, wid = x.shape[:2]
    order = pixel_order(heat, seed)
    counts = np.linspace(0, hgt * wid, steps + 1).round().astype(int)
    blurred = hidden(x, ExplainSettings(masker="blur", blur_sigma=blur_sigma))
    dele, ins = [], []
    for n in counts:
        keep = np.zeros(hgt * wid, bool)
        keep[order[:n]] = True
        keep = keep.reshape(hgt, wid, 1)
        dele.append(np.where(keep, blurred, x))
        ins.append(np.where(keep, x, blurred))
    p = fn(np.stack(dele + ins).astype(np.float32))[:, cls]
    d, i = p[:len(counts)], p[len(counts):]
    xs = counts / (hgt * wid)
    return {"deletion_auc": float(_trapezoid(d, xs)), "insertion_auc": float(_trapezoid(i, xs)),
            "deletion": d.round(4).tolist(), "insertion": i.round(4).tolist()}


def localisation(heat: np.ndarray, boxes: np.ndarray) -> dict[str, Any]:
    """Pointing game and heat share inside the boxes, on the positive part of the map."""
    return heat_in_boxes(display(heat), boxes)


def random_heat(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The baseline map: every pixel order equally likely."""
    return np.random.default_rng(seed).random(shape[:2]).astype(np.float32)


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation and quartiles over images (the spread the targets ask for)."""
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {"n": 0}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"n": int(a.size), "mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4),
            "q1": round(float(q1), 4), "median": round(float(med), 4), "q3": round(float(q3), 4)}
