"""``densenet121`` from keras.applications (ImageNet "torch" normalisation)."""

from __future__ import annotations

from kdefect.keras import keras, tf
from kdefect.models.backbones._common import check_imagenet_channels, finish
from kdefect.models.registry import register_backbone
from kdefect.models.weights import call_application


@register_backbone(
    "densenet121", preprocess="torch", default_size=224, min_size=32, supports_alpha=False, imagenet=True,
    attention_in_blocks=False,
)
def build(
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """DenseNet-121 built on ``inputs``; ends with its final BN-ReLU."""
    check_imagenet_channels(inputs, "densenet121", weights)
    app = call_application(keras.applications.DenseNet121, "densenet121", weights, include_top=False,
                           input_tensor=inputs)
    return finish(inputs, app.output, weights, "densenet121")
