"""Load a trained classifier and read its heads: the one loader for a run's ``model.keras``.

Every layer that needs a run's Keras model (evaluate, predict, export, calibration, the report) loads it here,
so kdefect's custom layers are always registered first and a missing or broken file is one clear ModelError.
``predict_heads`` returns the penultimate features and logits that calibration and the OOD gates use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.heads import FEATURES_LAYER, LOGITS_LAYER
from kdefect.errors import ModelError


def _register_custom_objects() -> None:
    for mod in ("kdefect.models.attention", "kdefect.tasks.classify", "kdefect.losses"):
        try:
            __import__(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("kdefect"):
                raise


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` model without compiling (kdefect's custom layers registered first)."""
    from kdefect.keras import keras  # lazy: TensorFlow loads only when used

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
    from kdefect.keras import keras  # lazy: TensorFlow loads only when used

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
    from kdefect.keras import keras  # lazy: TensorFlow loads only when used

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
