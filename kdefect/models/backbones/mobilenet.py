"""MobileNets from keras.applications: ``mobilenet_v2`` and ``mobilenet_v3_small`` / ``_large``.

MobileNetV3's own rescaling (``include_preprocessing``) is switched off: like
every kdefect backbone, scaling happens in the classifier's ``preprocess``
layer ("tf": x/127.5-1, the same maths), so all models look alike to export,
edge and trust code and the ImageNet weights (which exclude rescaling) still fit.
"""

from __future__ import annotations

from kdefect.keras import keras, tf
from kdefect.models.backbones._common import check_imagenet_channels, finish
from kdefect.models.registry import register_backbone
from kdefect.models.weights import call_application

_META = dict(preprocess="tf", default_size=224, min_size=32, supports_alpha=True, imagenet=True,
             attention_in_blocks=False)


@register_backbone("mobilenet_v2", **_META)
def build_mobilenet_v2(
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """MobileNetV2 (ImageNet weights exist for alpha 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)."""
    check_imagenet_channels(inputs, "mobilenet_v2", weights)
    app = call_application(keras.applications.MobileNetV2, "mobilenet_v2", weights, include_top=False,
                           input_tensor=inputs, alpha=alpha)
    return finish(inputs, app.output, weights, "mobilenet_v2")


def _v3(name: str, ctor: object, inputs: tf.Tensor, weights: str, alpha: float) -> tf.Tensor:
    check_imagenet_channels(inputs, name, weights)
    app = call_application(ctor, name, weights, include_top=False, input_tensor=inputs,
                           input_shape=tuple(inputs.shape[1:]), alpha=alpha, include_preprocessing=False)
    return finish(inputs, app.output, weights, name)


@register_backbone("mobilenet_v3_small", **_META)
def build_mobilenet_v3_small(
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """MobileNetV3-Small (ImageNet weights for alpha 0.75 and 1.0); has its own SE blocks."""
    return _v3("mobilenet_v3_small", keras.applications.MobileNetV3Small, inputs, weights, alpha)


@register_backbone("mobilenet_v3_large", **_META)
def build_mobilenet_v3_large(
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """MobileNetV3-Large (ImageNet weights for alpha 0.75 and 1.0); has its own SE blocks."""
    return _v3("mobilenet_v3_large", keras.applications.MobileNetV3Large, inputs, weights, alpha)
