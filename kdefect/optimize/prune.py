"""Magnitude pruning (TF-MOT) to a target sparsity, ready for pruning-preserving QAT.

Only layers TF-MOT can prune (Conv2D, Dense, ...) are wrapped, one by one, so
a model with attention or preprocessing layers can still be pruned. The
schedule ramps sparsity polynomially over the first ~70% of the steps and
holds it for the rest, so the network recovers at the final sparsity. The
returned model is stripped (plain layers, zeros in the kernels); quantize it
with ``Default8BitPrunePreserveQuantizeScheme`` so the zeros survive INT8.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kdefect.errors import ExportError
from kdefect.keras import keras, tfmot
from kdefect.optimize.common import as_dataset, compile_for, count_steps
from kdefect.optimize.qat import check_qat_model

log = logging.getLogger(__name__)

_S = tfmot().sparsity.keras
_PRUNABLE_WEIGHTS = {"Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel", "Dense": "kernel",
                     "SeparableConv2D": "pointwise_kernel", "Conv1D": "kernel"}


def _prunable(layer: Any) -> bool:
    return type(layer).__name__ in _PRUNABLE_WEIGHTS and getattr(layer, "built", True)


def prune_schedule(sparsity: float, total_steps: int) -> Any:
    """PolynomialDecay from 0 to ``sparsity``, ending on a pruning step well before training ends."""
    freq = max(1, total_steps // 20)
    end = max(freq, (int(0.7 * total_steps) // freq) * freq)
    return _S.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(sparsity), begin_step=0,
                              end_step=end, frequency=freq)


def prune(
    model: Any,
    train_ds: Any,
    sparsity: float = 0.5,
    epochs: int = 2,
    learning_rate: float = 1e-4,
    steps_per_epoch: int | None = None,
    skip: tuple[str, ...] = (),
    verbose: int = 0,
) -> Any:
    """Fine-tune ``model`` while pruning its kernels to ``sparsity``; returns the stripped float model."""
    if not 0.0 < float(sparsity) < 1.0:
        raise ExportError(f"--prune sparsity must be between 0 and 1 (e.g. 0.5), got {sparsity}.")
    check_qat_model(model)
    ds = as_dataset(train_ds)
    steps = count_steps(ds, steps_per_epoch)
    schedule = prune_schedule(sparsity, steps * max(1, epochs))
    pruned_names: list[str] = []

    def wrap(layer: Any) -> Any:
        if _prunable(layer) and layer.name not in skip:
            pruned_names.append(layer.name)
            return _S.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    base = keras.models.clone_model(model)  # fine-tuning must not change the caller's model
    base.set_weights(model.get_weights())
    wrapped = keras.models.clone_model(base, clone_function=wrap)  # wrappers keep base's weights
    if not pruned_names:
        raise ExportError(f"model '{model.name}' has no layer TF-MOT can prune (Conv2D, Dense, ...); drop --prune.")
    log.info("pruning %d layer(s) to %.0f%% sparsity over %d steps: %s", len(pruned_names), 100 * sparsity,
             steps * epochs, ", ".join(pruned_names))
    compile_for(wrapped, ds, learning_rate)
    wrapped.fit(ds, epochs=max(1, epochs), steps_per_epoch=steps, callbacks=[_S.UpdatePruningStep()], verbose=verbose)
    stripped = _S.strip_pruning(wrapped)
    log.info("pruned kernels: %.1f%% zeros", 100 * model_sparsity(stripped, pruned_names)["overall"])
    return stripped


def model_sparsity(model: Any, layer_names: list[str] | None = None) -> dict[str, float]:
    """Share of exactly-zero values in each prunable kernel, and over all of them."""
    out: dict[str, float] = {}
    zeros = total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QAT wrappers keep the float layer inside
        attr = _PRUNABLE_WEIGHTS.get(type(inner).__name__)
        if attr is None or (layer_names is not None and inner.name not in layer_names and layer.name not in layer_names):
            continue
        kernels = [w for w in layer.weights if w.name.split("/")[-1].startswith(attr)]
        if not kernels:
            continue
        k = np.asarray(kernels[0].numpy())
        out[inner.name] = float((k == 0).mean())
        zeros += int((k == 0).sum())
        total += k.size
    out["overall"] = zeros / total if total else 0.0
    return out
