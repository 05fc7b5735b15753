"""``efficientnet_b0`` from keras.applications.

EfficientNet carries its own input scaling (Rescaling 1/255 + Normalization,
whose ImageNet statistics are part of its weights), so it is registered with
``preprocess="raw"``: the classifier feeds it pixels 0..255 unchanged.
"""

from __future__ import annotations

from kdefect.keras import keras, tf
from kdefect.models.backbones._common import check_imagenet_channels, finish
from kdefect.models.registry import register_backbone
from kdefect.models.weights import call_application


@register_backbone(
    "efficientnet_b0", preprocess="raw", default_size=224, min_size=32, supports_alpha=False, imagenet=True,
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
    """EfficientNet-B0 built on raw-pixel ``inputs``; has its own SE blocks."""
    check_imagenet_channels(inputs, "efficientnet_b0", weights)
    app = call_application(keras.applications.EfficientNetB0, "efficientnet_b0", weights, include_top=False,
                           input_tensor=inputs)
    return finish(inputs, app.output, weights, "efficientnet_b0")
