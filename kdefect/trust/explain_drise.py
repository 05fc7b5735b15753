"""D-RISE (Petsiuk et al., CVPR 2021): which pixels make the detector find *this* box.

Why a method of its own: LIME, SHAP and occlusion explain one class
probability; a detector answers with boxes, and the question is about one of
them.  D-RISE needs only the detector's output, so it runs on the ``.tflite``
through the device's runner and decoder (``model_fn.TFLiteDetector``):

1. ``drise_masks`` random binary grids of ``drise_cells`` x ``drise_cells``,
   each cell kept with probability ``drise_keep``, bilinearly upsampled to
   ``(cells + 1)`` cell sizes and cropped at a random shift (RISE, Petsiuk et
   al. 2018), so the masks are smooth and not tied to the grid;
2. each masked image is ``image * mask + hidden * (1 - mask)``, ``hidden``
   being the classifier explainers' masker (``saliency_settings.hidden``:
   blur by default);
3. its weight is the best match among the boxes the device decoder keeps:
   ``max_j IoU(target box, box_j) * cos(target class scores, class scores_j)``.
   The paper multiplies by the proposal's objectness too; YOLOv8 and
   RetinaNet heads have no objectness output, so that term is 1: a masked
   image counts when the decoder still keeps a box there (score above the
   sidecar's ``score_threshold``), by how well it overlaps and how alike its
   class scores are;
4. the map is the weighted mean of the masks per pixel, ``sum_i w_i M_i / sum_i M_i``,
   minus the mean weight, so that, as for the other methods, positive means
   "keeping this pixel helped find the box" (the paper's ``sum_i w_i M_i``
   divided by a nearly constant mask coverage and shifted by a constant: the
   same ranking of pixels).

Deterministic under ``seed``: the masks are drawn from one seeded generator
before any model call.  TF-free (numpy; scipy for the blur).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kdefect.core.detect_decode import iou_matrix
from kdefect.errors import ModelError
from kdefect.trust.model_fn import BoxVectors
from kdefect.trust.saliency import Saliency
from kdefect.trust.saliency_settings import CHUNK, ExplainSettings, hidden

log = logging.getLogger(__name__)

# Weights are IoU x cosine in 0..1; a spread below this is the INT8 outputs' rounding, not evidence.
MIN_SPREAD = 1e-4

DetectFn = Callable[[np.ndarray], list[BoxVectors]]


@dataclass
class BoxSaliency(Saliency):
    """A D-RISE map with the box it explains (model-input pixels) and the detector's answer on the whole image."""

    box_index: int
    box: np.ndarray
    score: float
    detections: BoxVectors
    spread: float  # max - min of the mask weights: how much masking changed the match at all


def _bilinear(out_len: int, cells: int) -> np.ndarray:
    """(out_len, cells) weights resizing ``cells`` values to ``out_len`` (pixel centres aligned, edges clamped).

    Bilinear resizing is separable, so a whole chunk of masks upsamples in two batched matrix products instead of
    one ``scipy.ndimage.zoom`` call per mask.
    """
    u = np.clip((np.arange(out_len) + 0.5) * cells / out_len - 0.5, 0, cells - 1)
    lo = np.floor(u).astype(np.int64)
    hi = np.minimum(lo + 1, cells - 1)
    m = np.zeros((out_len, cells), np.float32)
    np.add.at(m, (np.arange(out_len), lo), 1 - (u - lo))
    np.add.at(m, (np.arange(out_len), hi), u - lo)
    return m


class MaskDraws:
    """The random grids and shifts of one explanation, drawn up front; ``masks(i, j)`` upsamples a slice."""

    def __init__(self, size: tuple[int, int], settings: ExplainSettings) -> None:
        h, w = size
        s = settings.drise_cells
        rng = np.random.default_rng(settings.seed)
        self.size = (h, w)
        self.grids = (rng.random((settings.drise_masks, s, s)) < settings.drise_keep).astype(np.float32)
        ch, cw = math.ceil(h / s), math.ceil(w / s)
        self.shifts = np.stack([rng.integers(0, ch, settings.drise_masks),
                                rng.integers(0, cw, settings.drise_masks)], 1)
        self.rows, self.cols = _bilinear((s + 1) * ch, s), _bilinear((s + 1) * cw, s)

    def masks(self, i: int, j: int) -> np.ndarray:
        """Masks ``i..j-1`` as (n, H, W) float32 in 0..1."""
        h, w = self.size
        rows = self.rows[self.shifts[i:j, :1] + np.arange(h)]  # (n, H, cells)
        cols = self.cols[self.shifts[i:j, 1:] + np.arange(w)]  # (n, W, cells)
        return rows @ self.grids[i:j] @ cols.transpose(0, 2, 1)


def similarity(box: np.ndarray, vector: np.ndarray, found: BoxVectors) -> float:
    """D-RISE's match of the target with the best kept box: IoU x cosine of class-score vectors (0 if none)."""
    if not len(found.boxes):
        return 0.0
    iou = iou_matrix(box[None], found.boxes)[0]
    v = np.asarray(found.vectors, np.float64)
    cos = v @ vector / np.maximum(np.linalg.norm(v, axis=1) * np.linalg.norm(vector), 1e-12)
    return float(np.max(iou * cos))


def drise_map(fn: DetectFn, image: np.ndarray, settings: ExplainSettings, box: int = 0,
              base: BoxVectors | None = None) -> BoxSaliency:
    """D-RISE map (H, W) for box ``box`` of the unmasked image's detections (best score first).

    ``fn``: (N, H, W, C) pixels -> the kept boxes per image; ``base``: its answer on ``image`` if already known
    (saves one call).  A ``box`` the detector did not find is a ``ModelError``.
    """
    x = np.asarray(image, np.float32)
    t0 = time.perf_counter()
    used = 0
    if base is None:
        base, used = fn(x[None])[0], 1
    if not 0 <= box < len(base.boxes):
        raise ModelError(f"box {box} does not exist: the detector keeps {len(base.boxes)} box(es) on this image "
                         "at its score_threshold; pick --box between 0 and the number of boxes - 1.")
    target, vector = np.asarray(base.boxes[box], np.float32), np.asarray(base.vectors[box], np.float64)
    draws, fill = MaskDraws(x.shape[:2], settings), hidden(x, settings)
    acc, cover, weights = np.zeros(x.shape[:2]), np.zeros(x.shape[:2]), []
    for i in range(0, settings.drise_masks, CHUNK):
        m = draws.masks(i, min(i + CHUNK, settings.drise_masks))
        batch = fill + m[..., None] * (x - fill)
        w = np.array([similarity(target, vector, f) for f in fn(batch)])
        acc += np.tensordot(w, m, 1)
        cover += m.sum(0)
        weights.append(w)
        used += len(m)
    w_all = np.concatenate(weights)
    spread = float(np.ptp(w_all))
    if spread < MIN_SPREAD:  # no mask changed the match: the map would be noise, scaled up to 1 by ``display``
        log.warning("D-RISE: box %d matched alike (%.3f, spread %.1e) under all %d masks, so the map is empty: the "
                    "box does not depend on what the masks hide (try a smaller --keep, another --masker or --box).",
                    box, float(w_all[0]), spread, len(w_all))
        heat = np.zeros(x.shape[:2])
    else:
        heat = acc / np.maximum(cover, 1e-9) - float(w_all.mean())
    return BoxSaliency("drise", heat.astype(np.float32), int(base.classes[box]), time.perf_counter() - t0, used,
                       int(box), target, float(base.scores[box]), base, spread)
