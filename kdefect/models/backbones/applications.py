"""Backbones from ``keras.applications``, registered from one table.

Each is built directly on the classifier's tensor (``input_tensor=``), so the
final model stays one flat graph that TF-MOT can wrap.  MobileNetV3's own
rescaling (``include_preprocessing``) is switched off: like every kdefect
backbone, scaling happens in the classifier's ``preprocess`` layer ("tf":
x/127.5-1, the same maths), so the ImageNet weights (which exclude rescaling)
still fit.  EfficientNet keeps its built-in rescaling ("raw").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdefect.core.catalogue import BACKBONE_FACTS
from kdefect.keras import keras, tf
from kdefect.models.backbones._common import check_imagenet_channels, finish
from kdefect.models.registry import register_backbone
from kdefect.models.weights import call_application

# name: (constructor, extra constructor kwargs, note); preprocessing and alpha support: kdefect.core.catalogue
_APPS: dict[str, tuple[Callable[..., Any], dict[str, Any], str]] = {
    "mobilenet_v2": (keras.applications.MobileNetV2, {}, "ImageNet weights exist for alpha 0.35, 0.5, 0.75, 1.0, 1.3, 1.4"),
    "mobilenet_v3_small": (keras.applications.MobileNetV3Small, {"include_preprocessing": False},
                           "ImageNet weights for alpha 0.75 and 1.0; has its own SE blocks"),
    "mobilenet_v3_large": (keras.applications.MobileNetV3Large, {"include_preprocessing": False},
                           "ImageNet weights for alpha 0.75 and 1.0; has its own SE blocks"),
    "resnet50_v2": (keras.applications.ResNet50V2, {}, "ends with its post-norm ReLU"),
    "densenet121": (keras.applications.DenseNet121, {}, "ends with its final BN-ReLU"),
    "efficientnet_b0": (keras.applications.EfficientNetB0, {}, "own rescaling and SE blocks"),
}


def _builder(name: str, ctor: Callable[..., Any], alpha_ok: bool, extra: dict[str, Any], note: str):
    def build(
        inputs: tf.Tensor,
        *,
        weights: str = "none",
        alpha: float = 1.0,
        attention: str = "none",
        attention_in_blocks: bool = False,
    ) -> tf.Tensor:
        check_imagenet_channels(inputs, name, weights)
        kwargs = dict(extra)
        if alpha_ok:
            kwargs["alpha"] = alpha
        if extra:  # MobileNetV3 needs the static shape besides the tensor
            kwargs["input_shape"] = tuple(inputs.shape[1:])
        app = call_application(ctor, name, weights, include_top=False, input_tensor=inputs, **kwargs)
        return finish(inputs, app.output, weights, name)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"keras.applications {name} built on ``inputs`` (flat): {note}."
    return build


for _name, (_ctor, _extra, _note) in _APPS.items():
    _facts = BACKBONE_FACTS[_name]
    register_backbone(_name, **_facts)(_builder(_name, _ctor, _facts["supports_alpha"], _extra, _note))
