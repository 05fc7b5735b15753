"""Backbone families; importing this package registers them all in ``BACKBONES``.

``build_backbone`` is the checked entry point: it validates alpha / attention
options against each backbone's metadata before calling its builder.
"""

from __future__ import annotations

import logging

from kdefect.errors import ConfigError
from kdefect.keras import tf
from kdefect.models.backbones import applications, resnet, tiny, yolo  # noqa: F401  (register)
from kdefect.models.registry import BACKBONES

log = logging.getLogger(__name__)


def check_backbone(name: str, size: int = 0, *, weights: str = "none", alpha: float = 1.0,
                   attention: str = "none", attention_in_blocks: bool = False) -> None:
    """Raise ConfigError if backbone ``name`` cannot be built with these options (at ``size`` px; 0: unknown).

    Cheap (no model is built), so ``fit`` runs it before creating the run folder.
    """
    meta = BACKBONES.meta(name)
    if alpha != 1.0 and not meta["supports_alpha"]:
        ok = [n for n in BACKBONES.names() if BACKBONES.meta(n)["supports_alpha"]]
        raise ConfigError(f"model.alpha={alpha}: backbone '{name}' has no width multiplier. Use 1.0 or one of {ok}.")
    if attention_in_blocks and attention != "none" and not meta["attention_in_blocks"]:
        ok = [n for n in BACKBONES.names() if BACKBONES.meta(n)["attention_in_blocks"]]
        raise ConfigError(
            f"model.attention_in_blocks: backbone '{name}' cannot take attention inside its blocks "
            f"(supported: {ok}). Set it to false to put {attention} on the backbone output."
        )
    if size and size < meta["min_size"]:
        raise ConfigError(f"data.image_size: backbone '{name}' needs at least {meta['min_size']} px, got {size}.")
    if weights == "imagenet" and not meta["imagenet"]:
        raise ConfigError(f"model.weights=imagenet: backbone '{name}' has no ImageNet weights; use none or a file.")


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
