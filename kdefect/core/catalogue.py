"""Every built-in backbone's name and static facts, and the checks that need only those.  TF-free.

Why: a mistyped ``model.backbone`` (or a width multiplier a backbone lacks) used to be reported only after
TensorFlow's start-up, because the names were known only to the modules that build the networks.  The facts live
here once; ``kdefect.models.backbones`` registers each builder under its name with these facts, so the CLI checks
a config against this table before it imports TensorFlow and the engine checks the same table again (a
test keeps the registry and this table equal).
"""

from __future__ import annotations

from typing import Any

from kdefect.core.registry import Registry, closest_hint
from kdefect.errors import ConfigError


def _facts(preprocess: str, default_size: int, min_size: int, *, alpha: bool, imagenet: bool,
           in_blocks: bool) -> dict[str, Any]:
    return {"preprocess": preprocess, "default_size": default_size, "min_size": min_size, "supports_alpha": alpha,
            "imagenet": imagenet, "attention_in_blocks": in_blocks}


# name -> (stackwise_channels, stackwise_depth); xs = keras-cv's yolo_v8_xs_backbone preset = Ultralytics YOLOv8n
YOLO_V8: dict[str, tuple[list[int], list[int]]] = {
    "yolo_v8_tiny": ([8, 16, 32, 64], [1, 1, 1, 1]),
    "yolo_v8_n": ([16, 32, 64, 128], [1, 2, 2, 1]),
    "yolo_v8_xs": ([32, 64, 128, 256], [1, 2, 2, 1]),
    "yolo_v8_s": ([64, 128, 256, 512], [1, 2, 2, 1]),
    "yolo_v8_m": ([96, 192, 384, 768], [2, 4, 4, 2]),
}

# the classifier backbones (kdefect.models.backbones); preprocess: how 0..255 pixels are scaled in the graph
BACKBONE_FACTS: dict[str, dict[str, Any]] = {
    # tiny.py: a full-resolution first block, or a stride-2 stem
    **{n: _facts("unit", 64, 16, alpha=True, imagenet=False, in_blocks=True) for n in ("tiny_cnn", "tiny_cnn_s2")},
    # resnet.py: the ResNet-18 layout, from scratch
    "resnet_small": _facts("tf", 128, 32, alpha=True, imagenet=False, in_blocks=True),
    # applications.py: keras.applications with ImageNet weights
    **{n: _facts("tf", 224, 32, alpha=True, imagenet=True, in_blocks=False)
       for n in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")},
    "resnet50_v2": _facts("tf", 224, 32, alpha=False, imagenet=True, in_blocks=False),
    "densenet121": _facts("torch", 224, 32, alpha=False, imagenet=True, in_blocks=False),
    "efficientnet_b0": _facts("raw", 224, 32, alpha=False, imagenet=True, in_blocks=False),
    # yolo.py: keras-cv's YOLOv8 backbone as a classifier (a detector's warm start)
    **{n: _facts("unit", 256, 32, alpha=False, imagenet=False, in_blocks=False) for n in YOLO_V8},
}

# detector-only backbones: name -> (keras-cv class, constructor kwargs); xs / s / m mirror keras-cv's presets
KCV_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: ("YOLOV8Backbone", {"stackwise_channels": c, "stackwise_depth": d}) for name, (c, d) in YOLO_V8.items()},
    "csp_darknet_tiny": ("CSPDarkNetBackbone", {"stackwise_channels": [48, 96, 192, 384],
                                                "stackwise_depth": [1, 3, 3, 1]}),
    "resnet_tiny_v1": ("ResNetBackbone", {"stackwise_filters": [64, 64, 96, 128], "stackwise_blocks": [1, 1, 1, 1],
                                          "stackwise_strides": [1, 2, 2, 2], "block_type": "basic_block"}),
    "resnet18_v1": ("ResNetBackbone", {"stackwise_filters": [64, 128, 256, 512], "stackwise_blocks": [2, 2, 2, 2],
                                       "stackwise_strides": [1, 2, 2, 2], "block_type": "basic_block"}),
    "resnet50_v1": ("ResNetBackbone", {"stackwise_filters": [64, 128, 256, 512], "stackwise_blocks": [3, 4, 6, 3],
                                       "stackwise_strides": [1, 2, 2, 2], "block_type": "block"}),
}

CATALOGUE = Registry("backbone")  # name -> its facts (the registry's closest-name message on a typo)
for _name, _f in BACKBONE_FACTS.items():
    CATALOGUE.add(_name, _f, **_f)
del _name, _f


def detect_backbone_names(registry: Registry = CATALOGUE) -> list[str]:
    """Every backbone a detector accepts: keras-cv's, then the classifier backbones of ``registry``."""
    return sorted(KCV_BACKBONES) + [n for n in registry.names() if n not in KCV_BACKBONES]


def check_backbone(name: str, size: int = 0, *, weights: str = "none", alpha: float = 1.0,
                   attention: str = "none", attention_in_blocks: bool = False, registry: Registry = CATALOGUE) -> None:
    """Raise ConfigError if backbone ``name`` cannot be built with these options (at ``size`` px; 0: unknown).

    Cheap and TF-free: the CLI runs it on the built-in catalogue before TensorFlow loads; ``fit`` runs it again on
    the live registry (``kdefect.models.BACKBONES``, which also holds backbones registered from Python).
    """
    meta = registry.meta(name)
    if alpha != 1.0 and not meta["supports_alpha"]:
        ok = [n for n in registry.names() if registry.meta(n)["supports_alpha"]]
        raise ConfigError(f"model.alpha={alpha}: backbone '{name}' has no width multiplier. Use 1.0 or one of {ok}.")
    if attention_in_blocks and attention != "none" and not meta["attention_in_blocks"]:
        ok = [n for n in registry.names() if registry.meta(n)["attention_in_blocks"]]
        raise ConfigError(
            f"model.attention_in_blocks: backbone '{name}' cannot take attention inside its blocks "
            f"(supported: {ok}). Set it to false to put {attention} on the backbone output."
        )
    if size and size < meta["min_size"]:
        raise ConfigError(f"data.image_size: backbone '{name}' needs at least {meta['min_size']} px, got {size}.")
    if weights == "imagenet" and not meta["imagenet"]:
        raise ConfigError(f"model.weights=imagenet: backbone '{name}' has no ImageNet weights; use none or a file.")


def check_detect_backbone(name: str, registry: Registry = CATALOGUE) -> None:
    """Raise ConfigError, with the closest name, if no detector takes backbone ``name``."""
    names = detect_backbone_names(registry)
    if name not in names:
        raise ConfigError(f"detect.backbone '{name}' is unknown.{closest_hint(name, names)} "
                          f"Available: {', '.join(names)}.")


def check_model_names(cfg: Any) -> None:
    """The config's backbone (and its options) against the catalogue; ``auto`` sizes are checked later."""
    if cfg.task == "detect":
        check_detect_backbone(cfg.detect.backbone)
        return
    m, size = cfg.model, cfg.data.image_size
    check_backbone(m.backbone, min(size) if isinstance(size, list | tuple) else 0, weights=m.weights,
                   alpha=m.alpha, attention=m.attention, attention_in_blocks=m.attention_in_blocks)
