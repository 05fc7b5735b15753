"""ResNets: ``resnet_small`` (from-scratch ResNet-18 layout, width ``alpha``) and ``resnet50_v2``."""

from __future__ import annotations

from kdefect.core.catalogue import BACKBONE_FACTS
from kdefect.errors import ModelError
from kdefect.keras import keras, tf
from kdefect.models.attention import apply_attention
from kdefect.models.backbones._common import finish, width
from kdefect.models.registry import register_backbone

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


def _conv_bn(x: tf.Tensor, filters: int, kernel: int, stride: int, name: str, relu: bool = True) -> tf.Tensor:
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x: tf.Tensor, filters: int, stride: int, name: str, attention: str) -> tf.Tensor:
    """Post-activation basic block (conv-BN-ReLU, conv-BN, [SE/CBAM], add, ReLU).

    Post-activation keeps every BatchNorm right after a conv, the pattern TF-MOT
    folds for QAT; attention sits before the add as in SE-ResNet / CBAM-ResNet.
    """
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_a")
    y = _conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
    if attention != "none":
        y = apply_attention(y, attention, name=f"{name}_att")
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@register_backbone("resnet_small", **BACKBONE_FACTS["resnet_small"])
def build_resnet_small(
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """ResNet-18 layout (2 basic blocks x 4 stages); ``alpha`` scales every width (0.25 fits a CPU)."""
    if weights == "imagenet":
        raise ModelError("backbone 'resnet_small' has no ImageNet weights; use resnet50_v2 or model.weights=none.")
    block_att = attention if attention_in_blocks else "none"
    x = _conv_bn(inputs, width(64, alpha), 7, 2, "stem")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, (filters, stride) in enumerate(STAGES, start=1):
        for b in range(2):
            x = _basic_block(x, width(filters, alpha), stride if b == 0 else 1, f"res{s}_{b + 1}", block_att)
    return finish(inputs, x, weights, "resnet_small")
