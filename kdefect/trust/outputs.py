"""Run a trained model once over a saved split and keep logits + penultimate features.

Why a cache: calibration, review thresholds, OOD, the report and the
benchmark all need the same val/test outputs; computing them once per model
(keyed by the model's sha256 and the split file) keeps ``kdefect report`` fast
on a CPU.  The cache lives in ``<run>/trust/`` and is rebuilt when the model
or split changes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.heads import FEATURES_LAYER, LOGITS_LAYER
from kdefect.errors import DataError, ModelError
from kdefect.utils.io import atomic_path, sha256_file

log = logging.getLogger(__name__)



def _register_custom_objects() -> None:
    for mod in ("kdefect.models.attention", "kdefect.tasks.classify", "kdefect.losses"):
        try:
            __import__(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("kdefect"):
                raise


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` model without compiling (kdefect's custom layers registered first)."""
    from kdefect.keras import keras

    _register_custom_objects()
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model '{p}' does not exist. Train one with `kdefect fit` or pass the run folder.")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:  # keras raises many types for a bad file
        raise ModelError(f"cannot load model '{p}': {exc}. Is it a kdefect .keras file?") from exc


def _find(model: Any, name: str) -> Any | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def feature_output(model: Any) -> Any:
    """The penultimate feature tensor: ``head_features`` (also when TF-MOT wrapped it as ``quant_head_features``),
    else the input of the last Dense layer (a user's model)."""
    from kdefect.keras import keras

    feats = _find(model, FEATURES_LAYER)
    if feats is None:
        feats = next((layer for layer in model.layers if layer.name.endswith("_" + FEATURES_LAYER)), None)
    if feats is not None:
        return feats.output
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)
             or isinstance(getattr(layer, "layer", None), keras.layers.Dense)]
    if not dense:
        raise ModelError(f"model '{model.name}' has no '{FEATURES_LAYER}' layer and no Dense head: "
                         "feature-based OOD scores need the penultimate feature vector.")
    return dense[-1].input


def head_model(model: Any) -> tuple[Any, bool]:
    """A model image -> [features, logits or probs]; the flag says whether the 2nd output is logits.

    Uses the classifier's ``head_features`` / ``head_logits`` layers; other
    models fall back to the input of the last Dense layer and log(probs).
    """
    from kdefect.keras import keras

    logits = _find(model, LOGITS_LAYER)
    out2 = logits.output if logits is not None else model.outputs[0]
    return keras.Model(model.inputs, [feature_output(model), out2], name="trust_heads"), logits is not None


def predict_heads(model: Any, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Features and logits (log-probs when the model has no logits layer) for uint8 / float images."""
    hm, is_logits = head_model(model)
    feats, outs = [], []
    for i in range(0, len(images), batch_size):
        f, o = hm(np.asarray(images[i:i + batch_size], np.float32), training=False)
        feats.append(np.asarray(f).reshape(len(f), -1))
        outs.append(np.asarray(o, np.float64))
    if not feats:
        k = model.output_shape[-1]
        return {"features": np.zeros((0, 1)), "logits": np.zeros((0, k))}
    logits = np.concatenate(outs)
    if not is_logits:
        logits = np.log(np.clip(logits, 1e-12, 1.0))
    return {"features": np.concatenate(feats), "logits": logits}


def split_images(run: Any, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, class indices, uint8 images) of a run's saved split."""
    from kdefect.data.pipeline import load_images, resize_mode
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


def split_outputs(run: Any, split: str, model: Any = None, batch_size: int = 64) -> dict[str, Any]:
    """{"paths", "y", "logits", "features"} for a run's split, cached in ``<run>/trust/``."""
    split_file = run.path / "split" / f"{split}.txt"
    key = hashlib.sha256((sha256_file(run.model_path) + (sha256_file(split_file) if split_file.is_file() else ""))
                         .encode()).hexdigest()
    cache = run.path / "trust" / f"outputs-{split}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {"paths": [str(p) for p in z["paths"]], "y": z["y"], "logits": z["logits"],
                        "features": z["features"]}
    paths, y, images = split_images(run, split)
    model = model if model is not None else load_model(run.model_path)
    out = predict_heads(model, images, batch_size)
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez_compressed(tmp, key=key, paths=np.array(paths), y=y, logits=out["logits"],
                            features=out["features"])
    log.info("cached %s outputs of %d images in %s", split, len(y), cache)
    return {"paths": paths, "y": y, **out}
