"""The YOLOv8 (CSPDarkNet-style) backbones as classifiers: the family a detector can be warm-started from.

Why: plants rarely can download COCO weights, but nearly always have (or can cheaply train) a classifier on the
same images.  A classifier built here has the same layer names and shapes as the backbone of a ``task: detect``
run with the same ``detect.backbone``, so ``detect.backbone_weights: RUN`` loads it layer by layer.  The layers
are keras-cv's own, applied flat on the classifier's graph (no nested model, so QAT still applies); the widths
and depths are the ones ``kdefect.models.detectors`` builds detectors with.
"""

from __future__ import annotations

from collections.abc import Callable

from kdefect.core.catalogue import BACKBONE_FACTS, YOLO_V8
from kdefect.errors import ModelError
from kdefect.keras import keras_cv, tf
from kdefect.models.backbones._common import finish
from kdefect.models.registry import register_backbone


def _builder(name: str) -> Callable[..., tf.Tensor]:
    channels, depth = YOLO_V8[name]

    def build(inputs: tf.Tensor, *, weights: str = "none", alpha: float = 1.0, attention: str = "none",
              attention_in_blocks: bool = False) -> tf.Tensor:
        if weights == "imagenet":
            raise ModelError(f"backbone '{name}' has no ImageNet weights; use model.weights=none or a file.")
        # keras-cv's YOLOV8Backbone body with its layer names, applied on this graph (its constructor would
        # make a nested model); the classifier's ``preprocess`` layer scales 0..255 to 0..1 as keras-cv does
        keras_cv()
        from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_backbone import apply_spatial_pyramid_pooling_fast
        from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_layers import apply_conv_bn, apply_csp_block

        x = apply_conv_bn(inputs, channels[0] // 2, kernel_size=3, strides=2, activation="swish", name="stem_1")
        x = apply_conv_bn(x, channels[0], kernel_size=3, strides=2, activation="swish", name="stem_2")
        for i, (c, d) in enumerate(zip(channels, depth)):
            if i:
                x = apply_conv_bn(x, c, kernel_size=3, strides=2, activation="swish", name=f"stack{i + 1}_downsample")
            x = apply_csp_block(x, depth=d, expansion=0.5, activation="swish", name=f"stack{i + 1}_c2f")
        x = apply_spatial_pyramid_pooling_fast(x, pool_size=5, activation="swish", name=f"stack{len(channels)}_spp_fast")
        return finish(inputs, x, weights, name)

    build.__doc__ = f"keras-cv YOLOv8 backbone {name} (channels {channels}, depths {depth}) for a classifier."
    return build


for _name in YOLO_V8:
    register_backbone(_name, **BACKBONE_FACTS[_name])(_builder(_name))
