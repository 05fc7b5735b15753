"""Models: backbone registry, attention layers, weights handling (no training here).

Importing ``kdefect.models`` registers every backbone and kdefect's custom
Keras objects, so saved ``.keras`` files load with plain
``keras.models.load_model`` and no ``custom_objects``.
"""

from __future__ import annotations

from kdefect.models.attention import CBAM, ChannelPool, SqueezeExcite, cbam_block, se_block, spatial_attention_model
from kdefect.models.backbones import build_backbone
from kdefect.models.registry import BACKBONES, Registry, register_backbone

__all__ = [
    "BACKBONES",
    "CBAM",
    "ChannelPool",
    "Registry",
    "SqueezeExcite",
    "build_backbone",
    "cbam_block",
    "register_backbone",
    "se_block",
    "spatial_attention_model",
]
