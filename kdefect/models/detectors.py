"""Detector architectures: keras-cv YOLOv8 and RetinaNet at a fixed input size, built offline.

Why fixed size and no presets: a fixed input shape is what converts to a
full-integer INT8 TFLite model (dynamic shapes leave ``tf.Conv2D`` unlowered),
and presets download weights, so every size is spelled out here instead.
Backbones: keras-cv's YOLOv8 / CSPDarkNet / ResNet (v1) backbones, or any kdefect
registry backbone wrapped to expose its stride-8/16/32 feature maps as P3-P5.
The *raw head* model (box regression + class logits, no decoding, no NMS) is
what gets exported; ``kdefect.core.detect_decode`` decodes it in numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdefect.core import detect_decode as dd
from kdefect.core.catalogue import KCV_BACKBONES, detect_backbone_names
from kdefect.core.registry import Registry
from kdefect.data.boxes import BOX_FORMAT
from kdefect.errors import ConfigError, ModelError
from kdefect.keras import keras, keras_cv
from kdefect.models.compiled import build_training_state

log = logging.getLogger(__name__)

def backbone_names() -> list[str]:
    """Every backbone a detector accepts (keras-cv ones plus kdefect's registry)."""
    from kdefect.models.backbones import BACKBONES

    return detect_backbone_names(BACKBONES)


def _wrap_registry(name: str, shape: tuple[int, int, int], weights: str) -> keras.Model:
    """A kdefect registry backbone as a keras-cv style backbone: P3-P5 = last layer at stride 8/16/32."""
    from kdefect.models.backbones import BACKBONES, build_backbone

    if name not in BACKBONES:
        raise ConfigError(f"detect.backbone '{name}' is unknown. Available: {', '.join(backbone_names())}.")
    inputs = keras.Input(shape, name="images")
    pre = BACKBONES.meta(name).get("preprocess", "tf")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs) if pre == "tf" else inputs
    feats = build_backbone(name, x, weights=weights)
    model = keras.Model(inputs, feats, name=f"{name}_pyramid")
    levels: dict[str, str] = {}
    best: dict[str, int] = {}
    for layer in model.layers:  # deepest layer with the fewest channels at each stride (a block output,
        out = layer.output      # not an expansion: keeps the FPN small)
        if isinstance(out, list) or len(getattr(out, "shape", ())) != 4:
            continue
        for lvl, stride in (("P3", 8), ("P4", 16), ("P5", 32)):
            if out.shape[1] == shape[0] // stride and out.shape[2] == shape[1] // stride \
                    and int(out.shape[-1]) <= best.get(lvl, 1 << 30):
                levels[lvl], best[lvl] = layer.name, int(out.shape[-1])
    if set(levels) != {"P3", "P4", "P5"}:
        raise ModelError(f"backbone '{name}' has no stride-8/16/32 feature maps at input {shape[:2]} "
                         f"(found {sorted(levels)}); pick another detect.backbone.")
    model.pyramid_level_inputs = levels
    return model


def build_backbone_pyramid(name: str, size: tuple[int, int], weights: str = "none") -> keras.Model:
    """A backbone with ``pyramid_level_inputs`` {P3, P4, P5} on a fixed (h, w, 3) input of raw 0..255 pixels."""
    if size[0] % 32 or size[1] % 32:
        raise ConfigError(f"data.image_size {list(size)}: detectors need height and width divisible by 32 "
                          "(e.g. 64, 160, 256, 320).")
    shape = (int(size[0]), int(size[1]), 3)
    if name in KCV_BACKBONES:
        cls_name, kwargs = KCV_BACKBONES[name]
        backbone = getattr(keras_cv().models, cls_name)(include_rescaling=True, input_shape=shape, **kwargs)
        if weights not in ("none", "", None):
            if weights == "imagenet":
                raise ConfigError(f"model.weights=imagenet: '{name}' has no offline ImageNet weights; "
                                  "use a weights file or a registry backbone such as mobilenet_v2.")
            backbone.load_weights(weights, skip_mismatch=True, by_name=str(weights).endswith(".h5"))
        return backbone
    return _wrap_registry(name, shape, weights)


@dataclass(frozen=True)
class Anchors:
    """RetinaNet's anchor boxes and how ground truth is assigned to them (``detect.anchor_*``, ``detect.match_iou``).

    Why configurable: the defaults come from COCO, and defect boxes are often long and thin (scratches, rolled-in
    scale), which 1:2 to 2:1 anchors overlap too little to be assigned. YOLOv8 is anchor-free and ignores them.
    """

    sizes: tuple[float, ...] = dd.RETINA_SIZES
    aspect_ratios: tuple[float, ...] = dd.RETINA_RATIOS
    match_iou: tuple[float, float] = (0.4, 0.5)  # background below the first, positive from the second

    @classmethod
    def from_config(cls, d: Any) -> Anchors:
        """From a ``DetectConfig``."""
        return cls(tuple(map(float, d.anchor_sizes)), tuple(map(float, d.anchor_aspect_ratios)),
                   (float(d.match_iou[0]), float(d.match_iou[1])))

    @property
    def per_location(self) -> int:
        return len(dd.RETINA_SCALES) * len(self.aspect_ratios)

    def layout(self) -> dict[str, Any]:
        """The sidecar entries the numpy decoder needs to regenerate these anchors."""
        return {"anchor_sizes": list(self.sizes), "aspect_ratios": list(self.aspect_ratios)}


@dataclass(frozen=True)
class Architecture:
    """One keras-cv detector family: how to build it on a backbone pyramid, its losses, its raw head, and which
    anchor settings its decoder needs (none for anchor-free YOLOv8)."""

    build: Callable[[keras.Model, int, int, int, Anchors], keras.Model]  # (backbone, classes, fpn, head, anchors)
    losses: dict[str, str]
    raw_head: Callable[[keras.Model], keras.Model]
    layout: Callable[[Anchors], dict[str, Any]] = lambda anchors: {}


def _build_yolov8(bb: keras.Model, num_classes: int, fpn_depth: int, head_convs: int, anchors: Anchors
                  ) -> keras.Model:
    return keras_cv().models.YOLOV8Detector(backbone=bb, num_classes=num_classes, bounding_box_format=BOX_FORMAT,
                                            fpn_depth=fpn_depth)


def _build_retinanet(bb: keras.Model, num_classes: int, fpn_depth: int, head_convs: int, anchors: Anchors
                     ) -> keras.Model:
    import numpy as np
    from keras_cv.src.models.object_detection.retinanet import PredictionHead  # lazy: keras-cv loads on use
    from keras_cv.src.models.object_detection.retinanet.retinanet import BOX_VARIANCE, RetinaNetLabelEncoder

    generator = keras_cv().layers.AnchorGenerator(
        bounding_box_format=BOX_FORMAT, sizes=list(anchors.sizes), aspect_ratios=list(anchors.aspect_ratios),
        scales=list(dd.RETINA_SCALES), strides=list(dd.RETINA_STRIDES), clip_boxes=True)
    encoder = RetinaNetLabelEncoder(bounding_box_format=BOX_FORMAT, anchor_generator=generator,
                                    negative_threshold=anchors.match_iou[0], positive_threshold=anchors.match_iou[1],
                                    box_variance=BOX_VARIANCE)
    prior = keras.initializers.Constant(-np.log((1 - 0.01) / 0.01))
    k = anchors.per_location
    return keras_cv().models.RetinaNet(
        backbone=bb, num_classes=num_classes, bounding_box_format=BOX_FORMAT, label_encoder=encoder,
        classification_head=PredictionHead(k * num_classes, prior, num_conv_layers=head_convs),
        box_head=PredictionHead(k * 4, keras.initializers.Zeros(), num_conv_layers=head_convs))


def _yolov8_raw_head(model: keras.Model) -> keras.Model:
    boxes, logits = [], []
    for i in range(1, 4):
        b = model.get_layer(f"yolo_v8_head_{i}_box_3_conv").output
        c = model.get_layer(f"yolo_v8_head_{i}_class_3_conv").output
        boxes.append(keras.layers.Reshape((-1, b.shape[-1]), name=f"raw_box_{i}")(b))
        logits.append(keras.layers.Reshape((-1, c.shape[-1]), name=f"raw_cls_{i}")(c))
    outs = [keras.layers.Concatenate(axis=1, name="raw_boxes")(boxes),
            keras.layers.Concatenate(axis=1, name="raw_scores")(logits)]
    return keras.Model(model.inputs[0], outs, name="yolov8_raw_head")


def _retinanet_raw_head(model: keras.Model) -> keras.Model:
    outs = [model.get_layer("box").output, model.get_layer("classification").output]
    return keras.Model(model.inputs[0], outs, name="retinanet_raw_head")


# ``detect.architecture`` -> builder; each has a decoder of the same name in ``core.detect_decode.DECODERS``.
DETECTORS = Registry("detect.architecture")
DETECTORS.add("yolov8", Architecture(_build_yolov8, {"box_loss": "ciou", "classification_loss": "binary_crossentropy"},
                                     _yolov8_raw_head))
DETECTORS.add("retinanet", Architecture(_build_retinanet, {"box_loss": "smoothl1", "classification_loss": "focal"},
                                        _retinanet_raw_head, Anchors.layout))


def build_detector(architecture: str, backbone: str, num_classes: int, size: tuple[int, int],
                   fpn_depth: int = 1, weights: str = "none", head_convs: int = 3,
                   anchors: Anchors | None = None) -> keras.Model:
    """A trainable keras-cv detector (``xyxy`` pixel boxes) at a fixed input size."""
    arch = DETECTORS.get(architecture)
    return arch.build(build_backbone_pyramid(backbone, size, weights), num_classes, fpn_depth, head_convs,
                      anchors or Anchors())


def compile_detector(model: keras.Model, architecture: str, learning_rate: float) -> None:
    """The standard keras-cv losses: CIoU + BCE (YOLOv8), smooth-L1 + focal (RetinaNet); clipped Adam."""
    opt = keras.optimizers.Adam(learning_rate, global_clipnorm=10.0)
    model.compile(**DETECTORS.get(architecture).losses, optimizer=opt, jit_compile=False)
    build_training_state(model)  # one trace of the train step, not two


def raw_head(model: keras.Model, architecture: str) -> keras.Model:
    """Image (raw 0..255 pixels) -> [box regression (1, A, 64|4), class *logits* (1, A, C)].

    For YOLOv8 the sigmoid is skipped and boxes / logits are taken before
    keras-cv concatenates them, so INT8 gives each its own quantisation scale.
    """
    return DETECTORS.get(architecture).raw_head(model)


def decoding_params(architecture: str, size: tuple[int, int], anchors: Anchors | None = None) -> dict[str, Any]:
    """What ``kdefect.core.detect_decode`` needs besides thresholds (the sidecar's ``detection``)."""
    arch = DETECTORS.get(architecture)  # a ConfigError naming the valid architectures, before the decoder's lookup
    return dd.decoding_params(architecture, size, arch.layout(anchors or Anchors()))
