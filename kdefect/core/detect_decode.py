"""Decode raw detector heads into boxes, in numpy only (no TensorFlow).

Why here: the exported TFLite detectors stop at the raw head (box regression +
class logits per anchor) because NMS and box decoding do not quantize or map
to the Edge TPU.  This module is the ONE decoder used after the interpreter on
the device, by ``kdefect evaluate model.tflite`` on the host and by the Keras
evaluation path, so every number kdefect reports comes from the same code.

Supported heads (the sidecar's ``detection`` dict names everything needed):

* ``yolov8``: per anchor point 4 x ``reg_max`` distribution logits (DFL: the
  expected distance left/top/right/bottom, in stride units) + class logits.
* ``retinanet``: per anchor box 4 deltas ``(dy, dx, dh, dw)`` scaled by the box
  variance + class logits; anchors are regenerated here exactly like keras-cv's
  ``AnchorGenerator`` (sizes x scales x aspect ratios per stride, clipped).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.registry import Registry
from kdefect.errors import EdgeError

YOLO_STRIDES = (8, 16, 32)
RETINA_STRIDES = (8, 16, 32, 64, 128)
RETINA_SIZES = (32.0, 64.0, 128.0, 256.0, 512.0)
RETINA_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
RETINA_RATIOS = (0.5, 1.0, 2.0)
RETINA_VARIANCE = (0.1, 0.1, 0.2, 0.2)


@dataclass
class Detections:
    """Boxes of one image: ``boxes`` (N, 4) xyxy pixels, ``classes`` (N,) int, ``scores`` (N,) float.

    ``anchors`` (N,): the row of the raw head each box came from (``decode`` sets it), so a caller can read a
    box's whole class-score vector (D-RISE compares those, ``kdefect.trust.explain_drise``).
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    anchors: np.ndarray | None = None

    def scaled(self, sx: float, sy: float) -> Detections:
        """The same detections in another pixel grid (model input -> original image)."""
        return Detections(self.boxes * np.array([sx, sy, sx, sy], np.float32), self.classes, self.scores,
                          self.anchors)

    def to_list(self, labels: list[str] | None = None) -> list[dict[str, Any]]:
        out = []
        for b, c, s in zip(self.boxes, self.classes, self.scores):
            d = {"box": [round(float(v), 2) for v in b], "class_id": int(c), "score": round(float(s), 5)}
            if labels is not None:
                d["label"] = labels[int(c)]
            out.append(d)
        return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float32)))  # overflow-free logistic


def yolo_anchor_points(size: tuple[int, int], strides=YOLO_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres (A, 2) as (x, y) in stride units and each anchor's stride (A,), keras-cv's order.

    Cached per (size, strides), read-only: the device and D-RISE decode thousands of images of one size.
    """
    return _yolo_anchor_points(tuple(int(v) for v in size), tuple(int(v) for v in strides))


@functools.lru_cache(maxsize=16)
def _yolo_anchor_points(size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    points, all_strides = [], []
    for s in strides:
        ys, xs = np.arange(0, size[0], s, dtype=np.float32), np.arange(0, size[1], s, dtype=np.float32)
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], 1) + 0.5 * s
        points.append(pts / s)
        all_strides.append(np.full(len(pts), s, np.float32))
    return _frozen(np.concatenate(points).astype(np.float32)), _frozen(np.concatenate(all_strides))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached arrays are shared between calls
    return a


def yolo_boxes(box_logits: np.ndarray, size: tuple[int, int], reg_max: int = 16,
               strides=YOLO_STRIDES, rows: np.ndarray | None = None) -> np.ndarray:
    """(A, 4*reg_max) DFL logits -> (A, 4) xyxy boxes in input pixels (only ``rows`` of them, when given)."""
    x = np.asarray(box_logits, np.float32).reshape(-1, 4, reg_max)
    points, stride = yolo_anchor_points(size, strides)
    if rows is not None:
        x, points, stride = x[rows], points[rows], stride[rows]
    x = np.exp(x - x.max(-1, keepdims=True))
    dist = (x / x.sum(-1, keepdims=True)) @ np.arange(reg_max, dtype=np.float32)  # (A, 4): l, t, r, b
    boxes = np.concatenate([points - dist[:, :2], points + dist[:, 2:]], 1)
    return boxes * stride[:, None]


def retina_anchors(size: tuple[int, int], strides=RETINA_STRIDES, sizes=RETINA_SIZES, scales=RETINA_SCALES,
                   ratios=RETINA_RATIOS) -> np.ndarray:
    """(A, 4) xyxy anchors, identical to keras-cv's ``AnchorGenerator(clip_boxes=True)``; cached, read-only."""
    def tup(v):
        return tuple(float(x) for x in v)

    return _retina_anchors(tuple(int(v) for v in size), tup(strides), tup(sizes), tup(scales), tup(ratios))


@functools.lru_cache(maxsize=16)
def _retina_anchors(size: tuple[int, int], strides: tuple, sizes: tuple, scales: tuple, ratios: tuple) -> np.ndarray:
    h, w = size
    out = []
    for stride, base in zip(strides, sizes):
        r = np.sqrt(np.asarray(ratios, np.float32))
        ah = np.concatenate([base * s / r for s in scales]).astype(np.float32)
        aw = np.concatenate([base * s * r for s in scales]).astype(np.float32)
        cx = np.arange(0.5 * stride, math.ceil(w / stride) * stride, stride, dtype=np.float32)
        cy = np.arange(0.5 * stride, math.ceil(h / stride) * stride, stride, dtype=np.float32)
        gx, gy = np.meshgrid(cx, cy)
        gx, gy = gx[..., None], gy[..., None]
        y0, y1 = (gy - ah / 2).ravel(), (gy + ah / 2).ravel()
        x0, x1 = (gx - aw / 2).ravel(), (gx + aw / 2).ravel()
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        out.append(np.stack([x0, y0, x1, y1], 1))
    return _frozen(np.concatenate(out).astype(np.float32))


def retina_boxes(deltas: np.ndarray, anchors: np.ndarray, variance=RETINA_VARIANCE) -> np.ndarray:
    """(A, 4) deltas (dy, dx, dh, dw) on (A, 4) xyxy anchors -> (A, 4) xyxy boxes."""
    d = np.asarray(deltas, np.float32).reshape(-1, 4) * np.asarray(variance, np.float32)
    ah, aw = anchors[:, 3] - anchors[:, 1], anchors[:, 2] - anchors[:, 0]
    acy, acx = anchors[:, 1] + ah / 2, anchors[:, 0] + aw / 2
    cy, cx = d[:, 0] * ah + acy, d[:, 1] * aw + acx
    bh, bw = np.exp(d[:, 2]) * ah, np.exp(d[:, 3]) * aw
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (N, 4) x (M, 4)."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def best_anchor_iou(boxes: np.ndarray, size: tuple[int, int], sizes=RETINA_SIZES, ratios=RETINA_RATIOS,
                    chunk: int = 256) -> np.ndarray:
    """Each xyxy box's (in input pixels) best IoU with any RetinaNet anchor at ``size``.

    Why: keras-cv's matcher gives a box no positive anchor when none reaches the positive IoU (it forces no match),
    so such a box is never learned; long thin defects at 1:2..2:1 anchors are the common case.
    """
    anchors = retina_anchors(size, sizes=sizes, ratios=ratios)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([iou_matrix(anchors, boxes[i:i + chunk]).max(axis=0)
                           for i in range(0, len(boxes), chunk)] or [np.zeros(0, np.float32)])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = iou_matrix(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, np.int64)


def select(boxes: np.ndarray, class_scores: np.ndarray, score_threshold: float, iou_threshold: float,
           max_detections: int = 100, class_agnostic: bool = False, pre_nms: int = 1000) -> Detections:
    """Threshold, then class-wise (or class-agnostic) NMS, keep the ``max_detections`` best."""
    if class_agnostic:  # one candidate per anchor: its best class
        best = class_scores.argmax(1)
        cand = np.nonzero(class_scores[np.arange(len(best)), best] > score_threshold)[0]
        cand_cls = best[cand]
    else:  # every (anchor, class) pair above the threshold is a candidate
        cand, cand_cls = np.nonzero(class_scores > score_threshold)
    cand_boxes, cand_sc = boxes[cand], class_scores[cand, cand_cls]
    top = np.argsort(-cand_sc, kind="stable")[:pre_nms]
    cand, cand_boxes, cand_cls, cand_sc = cand[top], cand_boxes[top], cand_cls[top], cand_sc[top]
    if class_agnostic:
        keep = nms(cand_boxes, cand_sc, iou_threshold)
    else:  # offset trick: boxes of different classes never overlap
        off = cand_cls[:, None].astype(np.float32) * (float(np.abs(cand_boxes).max(initial=1.0)) + 1.0) * 2
        keep = nms(cand_boxes + off, cand_sc, iou_threshold)
    keep = keep[:max_detections]
    return Detections(cand_boxes[keep].astype(np.float32), cand_cls[keep].astype(np.int64),
                      cand_sc[keep].astype(np.float32), cand[keep].astype(np.int64))


@dataclass(frozen=True)
class BoxDecoder:
    """One architecture's box coding: its anchor layout for the sidecar, and raw regression -> xyxy boxes."""

    layout: Callable[[], dict[str, Any]]
    boxes: Callable[[np.ndarray, tuple[int, int], dict[str, Any], np.ndarray | None], np.ndarray]


def _yolo(raw: np.ndarray, size: tuple[int, int], p: dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
    return yolo_boxes(raw, size, int(p.get("reg_max", 16)), p.get("strides", YOLO_STRIDES), rows)


def _retina(raw: np.ndarray, size: tuple[int, int], p: dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
    anchors = retina_anchors(size, p.get("strides", RETINA_STRIDES), p.get("anchor_sizes", RETINA_SIZES),
                             p.get("anchor_scales", RETINA_SCALES), p.get("aspect_ratios", RETINA_RATIOS))
    raw = np.asarray(raw, np.float32).reshape(-1, 4)
    if rows is not None:
        raw, anchors = raw[rows], anchors[rows]
    return retina_boxes(raw, anchors, p.get("box_variance", RETINA_VARIANCE))


# Detector architecture -> its decoder; models.detectors.DETECTORS holds the matching Keras builders.
DECODERS = Registry("detector architecture")
DECODERS.add("yolov8", BoxDecoder(lambda: {"strides": list(YOLO_STRIDES), "reg_max": 16}, _yolo))
DECODERS.add("retinanet", BoxDecoder(
    lambda: {"strides": list(RETINA_STRIDES), "anchor_sizes": list(RETINA_SIZES), "anchor_scales": list(RETINA_SCALES),
             "aspect_ratios": list(RETINA_RATIOS), "box_variance": list(RETINA_VARIANCE)}, _retina))


def decoding_params(architecture: str, size: tuple[int, int], layout: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``decode`` needs besides thresholds (the sidecar's ``detection``), for one architecture and size.

    ``layout`` replaces entries of the architecture's default anchor layout (RetinaNet: ``anchor_sizes``,
    ``aspect_ratios``), so a detector trained on other anchors decodes with the anchors it learned.
    """
    default = DECODERS.get(architecture).layout()
    unknown = sorted(set(layout or {}) - set(default))
    if unknown:
        raise ValueError(f"{architecture} has no anchor setting {', '.join(unknown)}; it has {', '.join(default)}")
    return {"architecture": architecture, "input_size": list(size), **default, **(layout or {})}


def decode(outputs: dict[str, np.ndarray], params: dict[str, Any], score_threshold: float | None = None) -> Detections:
    """Raw head of ONE image (``{"boxes": (A, ...), "scores": (A, C)}`` logits) -> detections in input pixels."""
    size = tuple(int(v) for v in params["input_size"])
    arch = params.get("architecture")
    raw_boxes = np.asarray(outputs["boxes"], np.float32).reshape(-1, outputs["boxes"].shape[-1])
    logits = np.asarray(outputs["scores"], np.float32).reshape(raw_boxes.shape[0], -1)
    if arch not in DECODERS:
        raise EdgeError(f"detector architecture {arch!r} in the sidecar is unknown; expected "
                        f"{' or '.join(DECODERS.names())}.")
    thr = float(params.get("score_threshold", 0.25) if score_threshold is None else score_threshold)
    scores = sigmoid(logits)
    # Only anchors with a class above the threshold can become detections: decode just those (a trained model has
    # a handful of thousands), the same candidates and order as decoding every anchor.
    rows = np.nonzero(scores.max(1, initial=-1.0) > thr)[0] if scores.size else np.zeros(0, np.int64)
    boxes = DECODERS.get(arch).boxes(raw_boxes, size, params, rows)
    boxes = np.clip(boxes, 0, [size[1], size[0], size[1], size[0]]).astype(np.float32).reshape(-1, 4)
    det = select(boxes, scores[rows], thr, float(params.get("iou_threshold", 0.5)),
                 int(params.get("max_detections", 100)), bool(params.get("class_agnostic", False)))
    return Detections(det.boxes, det.classes, det.scores, rows[det.anchors])


def image_score(outputs: dict[str, np.ndarray]) -> float:
    """The image's reject score: its highest class score over every anchor (raw head of ONE image).

    Why before thresholding and NMS: NMS always keeps the best box, so this is the score of the image's best
    detection whatever ``score_threshold`` the boxes are drawn at; the image-level decision needs no decoding.
    """
    logits = np.asarray(outputs["scores"], np.float32)
    return float(sigmoid(logits.max())) if logits.size else 0.0


def rejects(score: float, params: dict[str, Any]) -> bool:
    """The device's image-level decision: reject the part iff any box scores >= ``reject_min_score``.

    ``reject_min_score`` is the operating threshold chosen on validation for ``trust.target_escape`` and carried
    in the sidecar's ``detection`` dict; without it (an uncalibrated export) the box ``score_threshold`` applies.
    """
    thr = params.get("reject_min_score", params.get("score_threshold", 0.25))
    return bool(score >= float(thr))


def prepare_image(path_or_image: str | Path | np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Any image -> (H, W, 3) uint8 stretched to ``size`` (h, w) + original (w, h); Pillow bilinear.

    The training pipeline and every runtime resize the same way, so boxes
    mean the same thing everywhere.
    """
    from PIL import Image

    try:
        im = Image.fromarray(np.asarray(path_or_image)) if isinstance(path_or_image, np.ndarray) \
            else Image.open(path_or_image)
        im.load()
    except (OSError, ValueError) as exc:
        raise EdgeError(f"image '{path_or_image}' cannot be read ({exc}).") from exc
    orig = im.size
    im = im.convert("RGB").resize((int(size[1]), int(size[0])), Image.BILINEAR)
    return np.asarray(im, np.uint8), orig


def split_outputs(outputs: list[np.ndarray], params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Name an interpreter's output list by the indices the exporter recorded in the sidecar."""
    idx = params.get("outputs", {"boxes": 0, "scores": 1})
    return {k: np.asarray(outputs[int(i)])[0] for k, i in idx.items()}
