"""The backbone registry (``Registry`` itself is a core contract: ``kdefect.core.registry``)."""

from __future__ import annotations

from kdefect.core.registry import Registry

__all__ = ["BACKBONES", "Registry", "register_backbone"]

BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register
