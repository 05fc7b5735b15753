"""tf.data for detectors: fixed-size images + ragged xyxy boxes, box-aware augmentation.

Why preload: detection sets in inspection (NEU-DET: 1,800 images) fit in memory
at the model's input size, and decoding once with Pillow (any format, grey /
RGBA handled) is the exact resize the exported model sees on the device
(``kdefect.core.detect_decode.prepare_image``).  Batches stay ragged through
keras-cv's augmentation layers (flips, JitteredResize, Mosaic) and are padded
to dense only at the end; images without objects are simply empty rows.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdefect.core.detect_decode import prepare_image
from kdefect.data.boxes import BOX_FORMAT, ragged_targets, scale_boxes, to_dense
from kdefect.keras import keras, keras_cv, tf

log = logging.getLogger(__name__)


@dataclass
class DetArrays:
    """One split at model input size: boxes are xyxy in *input* pixels; ``sizes`` are original (w, h)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    sizes: list[tuple[int, int]]
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def load_arrays(index: Any, size: tuple[int, int], workers: int = 4) -> DetArrays:
    """Decode + resize every image of a DatasetIndex (detect task) to ``size`` (h, w)."""
    with ThreadPoolExecutor(workers) as pool:
        loaded = list(pool.map(lambda p: prepare_image(p, size), index.paths))
    images = np.stack([im for im, _ in loaded]) if loaded else np.zeros((0, *size, 3), np.uint8)
    sizes = [wh for _, wh in loaded]
    boxes = [scale_boxes(b, wh, (size[1], size[0])) for b, wh in zip(index.boxes, sizes)]
    labels = [np.asarray(c, np.int64).reshape(-1) for c in index.box_labels]
    return DetArrays(images, boxes, labels, sizes, list(index.paths))


def repeat_factors(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-image sampling weights for ``data.sampling: balanced`` in detection (repeat-factor sampling).

    Why this rule (LVIS, Gupta et al. 2019): an image holds several classes, so classes cannot be drawn one stream
    each as for classifiers.  Class ``c`` present in a share ``f_c`` of the training images gets
    ``r_c = max(1, sqrt(t / f_c))`` with ``t = 1 / K`` (K classes present): a class at or above its even share is
    never repeated, a rarer one is drawn more often, softened by the square root so its few images are not
    memorised.  An image takes the largest ``r_c`` of its classes; images without objects keep 1.
    """
    present = [np.unique(np.asarray(c, np.int64).reshape(-1)) for c in labels]
    n = max(len(labels), 1)
    freq = np.bincount(np.concatenate([*present, np.zeros(0, np.int64)]), minlength=num_classes) / n
    k = max(int((freq > 0).sum()), 1)
    r_c = np.where(freq > 0, np.maximum(1.0, np.sqrt((1.0 / k) / np.maximum(freq, 1e-12))), 1.0)
    return np.asarray([float(r_c[p].max()) if len(p) else 1.0 for p in present], np.float64)


def _sampled(elements: dict[str, Any], weights: np.ndarray, seed: int) -> tf.data.Dataset:
    """``len(weights)`` elements per pass, drawn with replacement with probability ~ ``weights``, redrawn each pass."""
    logits = tf.constant(np.log(np.asarray(weights, np.float64) / np.sum(weights))[None], tf.float32)

    def pick(r):
        i = tf.random.stateless_categorical(logits, 1, seed=tf.stack([r, tf.constant(seed, tf.int64)]))[0, 0]
        return tf.nest.map_structure(lambda t: t[i], elements)

    return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(len(weights))
            .map(pick, num_parallel_calls=tf.data.AUTOTUNE))


def augmenter(size: tuple[int, int], flip: bool, jitter: list[float], mosaic: bool, seed: int) -> Any:
    """keras-cv box-aware augmentation on ragged batches (None when everything is off)."""
    kcv = keras_cv()
    layers = []
    if flip:
        layers.append(kcv.layers.RandomFlip(mode="horizontal_and_vertical", bounding_box_format=BOX_FORMAT,
                                            seed=seed))
    if mosaic:
        layers.append(kcv.layers.Mosaic(bounding_box_format=BOX_FORMAT, seed=seed))
    if jitter:
        layers.append(kcv.layers.JitteredResize(target_size=tuple(size), scale_factor=tuple(jitter),
                                                bounding_box_format=BOX_FORMAT, seed=seed))
    return keras.Sequential(layers) if layers else None


def make_dataset(arr: DetArrays, batch_size: int, training: bool, *, max_boxes: int = 50, flip: bool = True,
                 jitter: list[float] | None = None, mosaic: bool = False, seed: int = 0,
                 repeat: bool = False, mosaic_switch: tf.Variable | None = None,
                 weights: np.ndarray | None = None) -> tf.data.Dataset:
    """(images float32 0..255, {"boxes": (B, max_boxes, 4), "classes": (B, max_boxes)}) batches.

    ``mosaic_switch``: a boolean ``tf.Variable`` read per batch; Mosaic applies only while it is True (a
    callback turns it off after the first epochs, ``detect.mosaic_epochs``).  ``weights`` (training only): draw
    each epoch's images with replacement in proportion to them (:func:`repeat_factors`) instead of shuffling.
    """
    size = arr.images.shape[1:3]
    targets = ragged_targets(arr.boxes, arr.labels)
    if training and weights is not None and len(arr):
        ds = _sampled({"images": tf.constant(arr.images), "bounding_boxes": targets}, weights, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices({"images": arr.images, "bounding_boxes": targets})
        if training:
            ds = ds.shuffle(max(len(arr), 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.ragged_batch(batch_size, drop_remainder=training and len(arr) >= batch_size)

    def cast(d):
        return {"images": tf.cast(d["images"], tf.float32), "bounding_boxes": d["bounding_boxes"]}

    ds = ds.map(cast, num_parallel_calls=tf.data.AUTOTUNE)
    switched = training and mosaic and mosaic_switch is not None
    aug = augmenter(size, flip, jitter or [], mosaic and not switched, seed) if training else None
    if switched:  # flip, then Mosaic while the switch is on, then the rest (the order of ``augmenter``)
        pre, post = augmenter(size, flip, [], False, seed), augmenter(size, False, jitter or [], False, seed)
        mos = keras_cv().layers.Mosaic(bounding_box_format=BOX_FORMAT, seed=seed)

        def apply(d):
            d = pre(d, training=True) if pre is not None else d
            d = tf.cond(mosaic_switch, lambda: mos(d, training=True), lambda: d)
            return post(d, training=True) if post is not None else d

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    elif aug is not None:
        ds = ds.map(lambda d: aug(d, training=True), num_parallel_calls=tf.data.AUTOTUNE)

    def dense(d):
        bb = to_dense(d["bounding_boxes"], max_boxes)
        return tf.clip_by_value(d["images"], 0.0, 255.0), {"boxes": bb["boxes"], "classes": bb["classes"]}

    return ds.map(dense, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
