"""Backbone families; importing this package registers them all in ``BACKBONES``.

``build_backbone`` is the checked entry point: it validates alpha / attention
options against each backbone's metadata before calling its builder.
"""

from __future__ import annotations

import logging

from kdefect.core import catalogue
from kdefect.keras import tf
from kdefect.models.backbones import applications, resnet, tiny, yolo  # noqa: F401  (register)
from kdefect.models.registry import BACKBONES

log = logging.getLogger(__name__)


def check_backbone(name: str, size: int = 0, *, weights: str = "none", alpha: float = 1.0,
                   attention: str = "none", attention_in_blocks: bool = False) -> None:
    """Raise ConfigError if backbone ``name`` cannot be built with these options (at ``size`` px; 0: unknown).

    The catalogue's check on the live registry, so backbones registered from Python pass it too.
    """
    catalogue.check_backbone(name, size, weights=weights, alpha=alpha, attention=attention,
                             attention_in_blocks=attention_in_blocks, registry=BACKBONES)


def build_backbone(
    name: str,
    inputs: tf.Tensor,
    *,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
) -> tf.Tensor:
    """Build backbone ``name`` directly on ``inputs`` and return its feature map."""
    builder = BACKBONES.get(name)
    check_backbone(name, min(int(inputs.shape[1] or 0), int(inputs.shape[2] or 0)), weights=weights, alpha=alpha,
                   attention=attention, attention_in_blocks=attention_in_blocks)
    log.info("backbone %s (alpha=%s, weights=%s, attention=%s in_blocks=%s)", name, alpha, weights, attention,
             attention_in_blocks)
    return builder(inputs, weights=weights, alpha=alpha, attention=attention, attention_in_blocks=attention_in_blocks)


__all__ = ["BACKBONES", "build_backbone", "check_backbone"]
