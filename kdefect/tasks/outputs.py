"""Run a run's classifier once over a saved split and keep logits + penultimate features.

Why a cache: calibration, review thresholds, OOD, the report and the
benchmark all need the same val/test outputs; computing them once per model
(keyed by the model's sha256 and the split file) keeps ``kdefect report`` fast
on a CPU.  The cache lives in ``<run>/trust/`` and is rebuilt when the model
or split changes.  It sits with the classifier's heads (``tasks``) because the engine's predictor needs the training
features for the host kNN gate as much as ``trust`` does; ``kdefect.trust.outputs`` re-exports it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import DataError
from kdefect.tasks.heads import feature_output, head_model, load_model, predict_heads
from kdefect.utils.io import atomic_path, sha256_file

log = logging.getLogger(__name__)

__all__ = ["feature_output", "head_model", "load_model", "outputs_cache", "outputs_fresh", "predict_heads",
           "split_images", "split_outputs"]


def split_images(run: Any, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, class indices, uint8 images) of a run's saved split."""
    from kdefect.data.pipeline import load_images, resize_mode  # lazy: data.pipeline loads TensorFlow
    from kdefect.data.split import label_indices, load_split

    classes, _ = run.classes()
    splits = load_split(run.path)
    if split not in splits:
        raise DataError(f"run '{run.path}' has no '{split}' split in split/. Re-run `kdefect fit`.")
    paths, names = splits[split]
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise DataError(f"split/{split}.txt in '{run.path}' has labels {unknown} not in classes.json.")
    cfg = run.config()
    images = load_images(list(paths), tuple(cfg.data.image_size), cfg.data.channels, resize=resize_mode(cfg.data))
    return [str(p) for p in paths], label_indices(classes, names), images


def outputs_cache(run: Any, split: str) -> Path:
    """Where ``split_outputs`` caches a split's outputs (valid only while its key matches the model and split)."""
    return run.path / "trust" / f"outputs-{split}.npz"


def _outputs_key(run: Any, split: str) -> str:
    split_file = run.path / "split" / f"{split}.txt"
    return hashlib.sha256((sha256_file(run.model_path) + (sha256_file(split_file) if split_file.is_file() else ""))
                          .encode()).hexdigest()


def _cached(run: Any, split: str, key: str, arrays: bool = True) -> dict[str, Any] | None:
    """The cached outputs when the cache's key is ``key`` (``arrays=False``: only whether it is, reading the key
    member alone), else None."""
    cache = outputs_cache(run, split)
    if not cache.is_file():
        return None
    with np.load(cache, allow_pickle=False) as z:
        if str(z["key"]) != key:
            return None
        if not arrays:
            return {}
        return {"paths": [str(p) for p in z["paths"]], "y": z["y"], "logits": z["logits"], "features": z["features"]}


def outputs_fresh(run: Any, split: str) -> bool:
    """True when ``split_outputs`` would answer from its cache (same model, same split), without the model."""
    return _cached(run, split, _outputs_key(run, split), arrays=False) is not None


def split_outputs(run: Any, split: str, model: Any = None, batch_size: int = 64) -> dict[str, Any]:
    """{"paths", "y", "logits", "features"} for a run's split, cached in ``<run>/trust/``."""
    key = _outputs_key(run, split)
    cached = _cached(run, split, key)
    if cached is not None:
        return cached
    cache = outputs_cache(run, split)
    paths, y, images = split_images(run, split)
    model = model if model is not None else load_model(run.model_path)
    out = predict_heads(model, images, batch_size)
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez_compressed(tmp, key=key, paths=np.array(paths), y=y, logits=out["logits"],
                            features=out["features"])
    log.info("cached %s outputs of %d images in %s", split, len(y), cache)
    return {"paths": paths, "y": y, **out}
