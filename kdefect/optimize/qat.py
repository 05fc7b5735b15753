"""Quantization-aware training (TF-MOT) for kdefect's functional classifiers.

``quantize_model`` refuses any model holding a layer outside TF-MOT's 8-bit
registry (Rescaling, Normalization, Multiply, kdefect's own attention layers).
So we annotate layer by layer instead:

* layers the default 8-bit registry supports: default annotation;
* layers with a config in ``kdefect.models.quantize.QUANTIZE_CONFIGS``: that config;
* weightless built-in layers that INT8 TFLite runs natively (preprocessing,
  Multiply, ...): quantize their output only;
* other built-in layers (Lambda, TF ops): left float, listed in the log; the
  converter still quantizes them from the representative data;
* a custom layer nobody knows how to quantize: ``ExportError`` offering PTQ.

After training, the input fake-quant range is pinned to the pixel range so the
INT8 model takes raw uint8 pixels with scale 1 and zero point 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kdefect.errors import ExportError
from kdefect.keras import keras, tf, tfmot
from kdefect.models.quantize import OutputQuantizeConfig
from kdefect.optimize.common import as_dataset, compile_for

log = logging.getLogger(__name__)

_tfmot = tfmot()
_Q = _tfmot.quantization.keras

# Weightless built-in layers whose output we fake-quantize (INT8 TFLite has kernels for them).
OUTPUT_ONLY_LAYERS = (
    "Rescaling", "Normalization", "Multiply", "Subtract", "Maximum", "Minimum", "Average",
    "Activation", "GlobalMaxPooling2D", "MaxPooling2D",
)
_FOLDS_BN = ("Conv2D", "DepthwiseConv2D")


@dataclass
class QatPlan:
    """Which layers get which treatment; logged so users see what stays float."""

    default: list[str] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)
    output_only: list[str] = field(default_factory=list)
    left_float: list[str] = field(default_factory=list)


def _kdefect_configs() -> dict[str, Any]:
    """QuantizeConfigs of kdefect.models.quantize (class name -> config class)."""
    from kdefect.models.quantize import QUANTIZE_CONFIGS

    return dict(QUANTIZE_CONFIGS)


def _inbound_class(layer: Any) -> str:
    nodes = getattr(layer, "_inbound_nodes", [])
    inbound = tf.nest.flatten(nodes[0].inbound_layers) if nodes else []
    return type(inbound[0]).__name__ if inbound else ""


def _instance(cfg: Any) -> Any:
    return cfg() if isinstance(cfg, type) else cfg


def _is_builtin(layer: Any) -> bool:
    return type(layer).__module__.startswith(("tf_keras.", "keras."))


def check_qat_model(model: Any) -> None:
    """QAT clones the graph layer by layer: it needs a flat functional or Sequential tf_keras model."""
    if not isinstance(model, keras.Model):
        raise ExportError(
            f"QAT needs a tf_keras model, got {type(model).__name__} (e.g. a Keras 3 model or a SavedModel). "
            "Use post-training quantization instead: drop --qat/--prune/--distill-from (`kdefect tflite MODEL --int8`)."
        )
    if not (getattr(model, "_is_graph_network", False) or isinstance(model, keras.Sequential)):
        raise ExportError(
            f"QAT needs a functional or Sequential tf_keras model; '{model.name}' is a subclassed model that "
            "TF-MOT cannot clone. Rebuild it with the functional API, or use post-training quantization (drop --qat)."
        )
    nested = [lay.name for lay in model.layers if isinstance(lay, keras.Model)]
    if nested:
        raise ExportError(
            f"QAT needs a flat model but '{model.name}' nests the model(s) {nested}; TF-MOT cannot annotate "
            "layers inside them. Flatten the model (build it on the backbone's tensors) or use PTQ (drop --qat)."
        )


def plan_qat(model: Any, extra_configs: dict[str, Any] | None = None, strict: bool = True) -> QatPlan:
    """Decide per layer how it will be quantized (see module doc)."""
    registry = _Q.default_8bit.Default8BitQuantizeRegistry()
    configs = {**_kdefect_configs(), **(extra_configs or {})}
    plan = QatPlan()
    unknown = []
    for layer in model.layers:
        cls = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if cls == "BatchNormalization" and _inbound_class(layer) in _FOLDS_BN:
            plan.default.append(layer.name)  # TF-MOT folds conv + BN itself
        elif cls in configs:
            plan.custom[layer.name] = cls
        elif registry.supports(layer):
            plan.default.append(layer.name)
        elif _is_builtin(layer) and cls in OUTPUT_ONLY_LAYERS:
            plan.output_only.append(layer.name)
        elif _is_builtin(layer) or not strict:
            plan.left_float.append(layer.name)
        else:
            unknown.append(f"{layer.name} ({type(layer).__module__}.{cls})")
    if unknown:
        raise ExportError(
            f"TF-MOT cannot quantize the custom layer(s) {', '.join(unknown)}: there is no QuantizeConfig for them. "
            "Use post-training INT8 quantization instead (drop --qat/--prune/--distill-from), or register a "
            "QuantizeConfig for the class in kdefect.models.quantize.QUANTIZE_CONFIGS."
        )
    return plan


def annotate_for_qat(model: Any, extra_configs: dict[str, Any] | None = None, strict: bool = True) -> tuple[Any, QatPlan]:
    """Return (annotated clone, plan). Logs every layer that stays float."""
    check_qat_model(model)
    plan = plan_qat(model, extra_configs, strict)
    configs = {**_kdefect_configs(), **(extra_configs or {})}

    def annotate(layer: Any) -> Any:
        if layer.name in plan.custom:
            return _Q.quantize_annotate_layer(layer, _instance(configs[plan.custom[layer.name]]))
        if layer.name in plan.default:
            return _Q.quantize_annotate_layer(layer)
        if layer.name in plan.output_only:
            return _Q.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return layer

    with _Q.quantize_scope(scope_objects(configs)):
        annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    if plan.left_float:
        log.warning("QAT: %d layer(s) stay float during training (the converter quantizes them from the "
                    "representative data): %s", len(plan.left_float), ", ".join(plan.left_float))
    log.info("QAT: %d default, %d kdefect-config, %d output-only layers annotated.",
             len(plan.default), len(plan.custom), len(plan.output_only))
    return annotated, plan


def scope_objects(configs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Custom objects quantize_apply needs to clone annotated layers."""
    from kdefect.models.quantize import quantize_scope_objects

    objs: dict[str, Any] = {"OutputQuantizeConfig": OutputQuantizeConfig, **quantize_scope_objects()}
    for cfg in (configs if configs is not None else _kdefect_configs()).values():
        cls = cfg if isinstance(cfg, type) else type(cfg)
        objs[cls.__name__] = cls
    return objs


def apply_quantization(model: Any, scheme: Any = None, extra_configs: dict[str, Any] | None = None,
                       strict: bool = True) -> tuple[Any, QatPlan]:
    """Annotate + ``quantize_apply``: an untrained QAT model and its plan."""
    annotated, plan = annotate_for_qat(model, extra_configs, strict)
    configs = {**_kdefect_configs(), **(extra_configs or {})}
    try:
        with _Q.quantize_scope(scope_objects(configs)):
            qmodel = _Q.quantize_apply(annotated, scheme) if scheme is not None else _Q.quantize_apply(annotated)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ExportError(
            f"TF-MOT could not build the quantization-aware model from '{model.name}': {exc}. "
            "Use post-training INT8 quantization instead (drop --qat/--prune/--distill-from)."
        ) from exc
    return qmodel, plan


def pin_input_range(qmodel: Any, low: float = 0.0, high: float = 255.0) -> bool:
    """Fix the fake-quant range on the model input to the pixel range (scale 1, zero point 0 in uint8).

    Safe because the first layer is the in-model preprocessing: integer pixels
    0..255 are represented exactly. Returns False when no input quantizer exists.
    """
    done = False
    for layer in qmodel.layers:
        if type(layer).__name__ != "QuantizeLayer":
            continue
        inbound = [n.inbound_layers for n in layer._inbound_nodes]
        if not any(isinstance(lay, keras.layers.InputLayer) for group in inbound for lay in tf.nest.flatten(group)):
            continue
        for w in layer.weights:
            if w.name.split("/")[-1].startswith(f"{layer.name}_min") or w.name.endswith("_min:0"):
                w.assign(low)
                done = True
            elif w.name.endswith("_max:0"):
                w.assign(high)
    return done


def quantize_aware(
    model: Any,
    train_ds: Any,
    epochs: int = 1,
    learning_rate: float = 1e-4,
    steps_per_epoch: int | None = None,
    val_ds: Any = None,
    scheme: Any = None,
    input_range: tuple[float, float] | None = (0.0, 255.0),
    strict: bool = True,
    extra_configs: dict[str, Any] | None = None,
    verbose: int = 0,
) -> Any:
    """Wrap ``model`` for QAT and fine-tune it; returns the trained QAT model (convert with ``to_tflite``).

    ``scheme``: a TF-MOT QuantizeScheme, e.g. ``Default8BitPrunePreserveQuantizeScheme()`` for pruned models.
    ``input_range``: pixel range to pin on the input quantizer (None to learn it).
    ``val_ds``: when given, the epoch with the lowest validation loss is kept (not simply the last one).
    """
    ds = as_dataset(train_ds)
    qmodel, _plan = apply_quantization(model, scheme, extra_configs, strict)
    if input_range is not None:
        pin_input_range(qmodel, *input_range)
    if epochs > 0:
        from kdefect.engine.callbacks import KeepBest

        compile_for(qmodel, ds, learning_rate)
        qmodel.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds, verbose=verbose,
                   callbacks=[KeepBest("val_loss")] if val_ds is not None else [])
    if input_range is not None and not pin_input_range(qmodel, *input_range):
        log.info("QAT: no input quantizer found; the converter sets the input range from the representative data.")
    return qmodel
