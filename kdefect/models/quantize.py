"""TF-MOT quantize configs for the layers TF-MOT's default 8-bit scheme does not know.

TF-MOT refuses any layer missing from its registry. kdefect models contain a
few: its own ``ChannelPool`` / ``SqueezeExcite`` / ``CBAM``, and standard
layers TF-MOT 0.8 never listed (``Multiply`` in SE/CBAM blocks, ``Rescaling`` /
``Normalization`` preprocessing, a BatchNormalization not preceded by a conv).
``QUANTIZE_CONFIGS`` maps their class names to configs; ``annotate_for_qat``
applies them and ``quantize_scope_objects`` lists what ``quantize_scope`` needs.

* Weightless layers get an output fake-quant: the INT8 TFLite kernels
  (MUL, MEAN, REDUCE_MAX, CONCATENATION) then have QAT-learned ranges.
* ``SqueezeExcite`` / ``CBAM`` (one layer each) get their kernels and output
  quantized, but their *internal* activations (pooled vector, gate) stay float
  during QAT: prefer the standard-layer ``se_block`` / ``cbam_block`` (kdefect's
  default), where every intermediate tensor gets its own fake-quant.
"""

from __future__ import annotations

import logging
from typing import Any

from kdefect.keras import keras, tfmot
from kdefect.models.attention import CBAM, ChannelPool, SqueezeExcite

log = logging.getLogger(__name__)
_q = tfmot().quantization.keras


def _act_quantizer() -> Any:
    return _q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


def _weight_quantizer() -> Any:
    return _q.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)


class OutputQuantizeConfig(_q.QuantizeConfig):
    """No weights to quantize; fake-quantize the layer's output only."""

    def get_weights_and_quantizers(self, layer: Any) -> list:
        return []

    def get_activations_and_quantizers(self, layer: Any) -> list:
        return []

    def set_quantize_weights(self, layer: Any, quantize_weights: list) -> None:
        pass

    def set_quantize_activations(self, layer: Any, quantize_activations: list) -> None:
        pass

    def get_output_quantizers(self, layer: Any) -> list:
        return [_act_quantizer()]

    def get_config(self) -> dict[str, Any]:
        return {}


class _KernelsQuantizeConfig(OutputQuantizeConfig):
    """Quantize the kernels of named sublayers (and the output)."""

    SUBLAYERS: tuple[str, ...] = ()

    def get_weights_and_quantizers(self, layer: Any) -> list:
        return [(getattr(layer, s).kernel, _weight_quantizer()) for s in self.SUBLAYERS]

    def set_quantize_weights(self, layer: Any, quantize_weights: list) -> None:
        for s, w in zip(self.SUBLAYERS, quantize_weights, strict=True):
            getattr(layer, s).kernel = w


class SqueezeExciteQuantizeConfig(_KernelsQuantizeConfig):
    """SqueezeExcite layer: both 1x1 conv kernels + output; the gate stays float in QAT."""

    SUBLAYERS = ("reduce", "expand")


class CBAMQuantizeConfig(_KernelsQuantizeConfig):
    """CBAM layer: MLP and spatial conv kernels + output; internal gates stay float in QAT."""

    SUBLAYERS = ("mlp1", "mlp2", "spatial")


QUANTIZE_CONFIGS: dict[str, type] = {
    "SqueezeExcite": SqueezeExciteQuantizeConfig,
    "CBAM": CBAMQuantizeConfig,
    "ChannelPool": OutputQuantizeConfig,
    "Multiply": OutputQuantizeConfig,
    "Rescaling": OutputQuantizeConfig,
    "Normalization": OutputQuantizeConfig,
    "BatchNormalization": OutputQuantizeConfig,  # only when not folded into a preceding conv
}
_FOLDS_BN = ("Conv2D", "DepthwiseConv2D")


def quantize_scope_objects() -> dict[str, Any]:
    """Every custom class a quantized kdefect model needs to deserialise (for ``quantize_scope``)."""
    objects: dict[str, Any] = {c.__name__: c for c in set(QUANTIZE_CONFIGS.values())}
    objects.update({c.__name__: c for c in (ChannelPool, SqueezeExcite, CBAM)})
    return objects


def _inbound_class(layer: keras.layers.Layer) -> str:
    nodes = getattr(layer, "_inbound_nodes", [])
    inbound = nodes[0].inbound_layers if nodes else []
    inbound = inbound if isinstance(inbound, list) else [inbound]
    return type(inbound[0]).__name__ if inbound else ""


def _config_for(layer: keras.layers.Layer) -> type | None:
    name = type(layer).__name__
    if name == "BatchNormalization" and _inbound_class(layer) in _FOLDS_BN:
        return None  # TF-MOT folds conv+BN itself
    return QUANTIZE_CONFIGS.get(name)


def annotate_for_qat(model: keras.Model) -> tuple[keras.Model, dict[str, str]]:
    """Annotate ``model`` for ``quantize_apply``: kdefect configs where needed, default scheme elsewhere.

    Returns the annotated model (sharing weights with ``model``) and ``{layer: config}``
    for every layer that got a kdefect config, so callers can report it. Apply with::

        with quantize_scope(quantize_scope_objects()):
            qat = tfmot.quantization.keras.quantize_apply(annotated)
    """
    used: dict[str, str] = {}

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        cfg = _config_for(layer)
        if cfg is None:
            return layer
        used[layer.name] = cfg.__name__
        return _q.quantize_annotate_layer(layer, quantize_config=cfg())

    with _q.quantize_scope(quantize_scope_objects()):
        cloned = keras.models.clone_model(model, clone_function=annotate)
        annotated = _q.quantize_annotate_model(cloned)
    for layer, cfg in used.items():
        log.info("QAT: layer %s uses %s", layer, cfg)
    return annotated, used


def quantize_model(model: keras.Model) -> keras.Model:
    """``tfmot.quantization.keras.quantize_model`` for kdefect models (custom layers handled)."""
    annotated, _ = annotate_for_qat(model)
    with _q.quantize_scope(quantize_scope_objects()):
        return _q.quantize_apply(annotated)
