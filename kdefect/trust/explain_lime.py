"""LIME (Ribeiro et al. 2016) through the maintained ``lime`` package (``lime_image``).

Superpixels come from SLIC (scikit-image, deterministic); LIME switches them
off at random (a seeded ``RandomState``), hides them with their mean colour,
scores every perturbed image with the model function and fits a weighted
ridge model; the per-superpixel weights for the explained class become the
map.  A switched-off superpixel takes the image's mean grey level, not
LIME's default (the superpixel's own mean colour): a uniform defect that
fills its superpixel would otherwise look unchanged when "removed", and LIME
would never see it matter.  ``lime`` draws its own tqdm bar on stderr for every image: it is
silenced here, the caller shows one bar per image instead.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from kdefect.trust.saliency_settings import CHUNK, ExplainSettings, require


def segments_of(image: np.ndarray, settings: ExplainSettings) -> np.ndarray:
    """SLIC superpixel labels (H, W) from 0, the same for a given image and settings."""
    from skimage.segmentation import slic

    x = np.asarray(image, np.float64) / 255.0
    return slic(x, n_segments=settings.segments, compactness=settings.compactness, sigma=1, start_label=0,
                channel_axis=-1 if x.ndim == 3 else None)


def lime_map(fn: Any, image: np.ndarray, cls: int, settings: ExplainSettings) -> np.ndarray:
    """Signed (H, W) map: each pixel carries its superpixel's LIME weight for class ``cls``."""
    lime_image = require("lime.lime_image")
    x = np.asarray(image, np.float64)
    seg = segments_of(x, settings)
    explainer = lime_image.LimeImageExplainer(random_state=settings.seed)
    with contextlib.redirect_stderr(io.StringIO()):
        exp = explainer.explain_instance(x, lambda b: fn(b), labels=(int(cls),), top_labels=None, hide_color=float(x.mean()),
                                         num_features=int(seg.max()) + 1, num_samples=settings.lime_samples,
                                         batch_size=CHUNK, segmentation_fn=lambda _: seg,
                                         random_seed=settings.seed)
    weights = np.zeros(int(seg.max()) + 1)
    for s, wgt in exp.local_exp[int(cls)]:
        weights[s] = wgt
    return weights[seg].astype(np.float32)
