"""Box formats, in one place.

kdefect stores and reports boxes as ``xyxy`` in pixels of the *original* image
(what VOC files and users mean).  Models train on a fixed input size, so boxes
are scaled into the model's pixel grid on the way in and back on the way out.
keras-cv layers get the same ``xyxy`` pixel boxes (``BOX_FORMAT``) as ragged
``{"boxes", "classes"}`` dicts, padded to dense only right before the loss.
numpy helpers are TF-free; the tf helpers import TensorFlow lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOX_FORMAT = "xyxy"  # the format every keras-cv layer and model in kdefect is built with
PAD = -1.0  # keras-cv's padding value for dense boxes / classes


def scale_boxes(boxes: np.ndarray, src_wh: tuple[float, float], dst_wh: tuple[float, float]) -> np.ndarray:
    """xyxy pixel boxes from an image of ``src_wh`` (w, h) to one of ``dst_wh``."""
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """xyxy -> COCO's ``[x, y, width, height]``."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def clip_boxes(boxes: np.ndarray, wh: tuple[float, float]) -> np.ndarray:
    """Clip xyxy boxes to an image of ``wh`` (w, h)."""
    w, h = wh
    return np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, [w, h, w, h]).astype(np.float32)


def ragged_targets(boxes: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, Any]:
    """Per-image box lists -> keras-cv ragged ``{"boxes": (N, None, 4), "classes": (N, None)}``."""
    from kdefect.keras import tf  # lazy: TensorFlow loads only when used

    return {
        "boxes": tf.ragged.constant([np.asarray(b, np.float32).reshape(-1, 4).tolist() for b in boxes],
                                    ragged_rank=1, inner_shape=(4,), dtype=tf.float32),
        "classes": tf.ragged.constant([np.asarray(c, np.float32).reshape(-1).tolist() for c in labels],
                                      dtype=tf.float32),
    }


def to_dense(bounding_boxes: dict[str, Any], max_boxes: int) -> dict[str, Any]:
    """Ragged keras-cv boxes -> dense, padded with -1 (what the detectors' losses expect)."""
    from kdefect.keras import keras_cv  # lazy: keras-cv loads only for detection

    return keras_cv().bounding_box.to_dense(bounding_boxes, max_boxes=max_boxes)
