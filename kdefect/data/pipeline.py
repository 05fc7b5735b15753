"""tf.data input pipelines: parallel decode, resize, cache, shuffle, augment, batch.

Decisions, and why:
- Decode: ``tf.io.decode_image`` (jpg/png/bmp/gif) in the graph; TIFF, which TF
  cannot decode, goes through Pillow in ``tf.numpy_function`` for those files
  only (chosen over converting copies so predictions and split lists keep the
  user's paths; cost: TIFF decoding holds the GIL, hidden after epoch 1 by the
  cache).  Grey and grey+alpha are replicated to 3 channels, alpha is dropped.
- Resize: bilinear with antialias, then rounded to uint8 - exactly what
  :func:`load_images` returns and what an exported uint8 TFLite model is fed,
  so training, evaluation and export see the same pixels.  (Pillow's BILINEAR
  resize, which the TF-free edge runtime can use, matches it within a few grey
  levels; see tests/data/test_pipeline.py.)
- ``data.resize`` (squash | letterbox | crop; see ``kdefect.edge.preprocess``):
  letterbox sizes and crop boxes are the integer formulas of
  ``kdefect.edge.preprocess.letterbox_size`` / ``crop_box`` written in int64 TF
  ops, so the device runtime reproduces every pixel.  Crop cuts the image
  edges (defects there can vanish): ``auto`` never picks it.
- The cache holds those uint8 images (4x smaller than float).  Shuffling and
  augmentation come after it and are seeded (stateless ops), reshuffled per epoch.
- Distribution: ``batch_size`` is the GLOBAL batch; training drops the
  remainder so every replica gets equal batches; auto-shard policy DATA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kdefect.edge.preprocess import check_resize, crop_box, letterbox_size, resize_mode  # noqa: F401 (re-exported)
from kdefect.errors import ConfigError
from kdefect.keras import tf

from .augment import augment_image, is_active

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 * 1024**3
TIFF_PATTERN = r"(?i).*\.tiff?$"


def _pil_decode(data: bytes) -> np.ndarray:
    """An encoded image (the file's bytes) -> uint8 (H, W, 3) via Pillow (TIFF)."""
    import io

    from PIL import Image  # lazy: Pillow loads only when images are read

    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # scale high-bit-depth to 8 bit
            a = np.asarray(im, np.float64)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-9) * 255
            return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=-1)
        return np.asarray(im.convert("RGB"), np.uint8)


def decode_bytes(data: tf.Tensor, name: tf.Tensor) -> tf.Tensor:
    """A file's encoded bytes -> uint8 (H, W, 3); ``name`` (its path) picks Pillow for TIFF.

    Shared by the folder source (bytes read from disk) and packed TFRecords (the
    original bytes kept in the record), so both decode every pixel alike.
    """

    def with_tf() -> tf.Tensor:
        img = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.cond(tf.shape(img)[-1] < 3, lambda: tf.image.grayscale_to_rgb(img[..., :1]),
                       lambda: img[..., :3])

    def with_pillow() -> tf.Tensor:
        return tf.numpy_function(_pil_decode, [data], tf.uint8, stateful=False)

    img = tf.cond(tf.strings.regex_full_match(name, TIFF_PATTERN), with_pillow, with_tf)
    img.set_shape([None, None, 3])
    return img


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """Any supported file -> uint8 (H, W, 3)."""
    return decode_bytes(tf.io.read_file(path), path)


def _resize_round(img: tf.Tensor, size: Any) -> tf.Tensor:
    """Bilinear (antialias) resize to ``size``, rounded and clipped to uint8."""
    img = tf.image.resize(img, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def tf_letterbox_size(h: tf.Tensor, w: tf.Tensor, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``kdefect.edge.preprocess.letterbox_size`` in int64 TF ops (same integers)."""
    hh, ww = tf.constant(height, tf.int64), tf.constant(width, tf.int64)
    by_height = hh * w <= ww * h
    nh = tf.where(by_height, hh, tf.maximum(tf.constant(1, tf.int64), (2 * h * ww + w) // (2 * w)))
    nw = tf.where(by_height, tf.maximum(tf.constant(1, tf.int64), (2 * w * hh + h) // (2 * h)), ww)
    return nh, nw


def tf_crop_box(h: tf.Tensor, w: tf.Tensor, height: int, width: int) -> tuple[tf.Tensor, ...]:
    """``kdefect.edge.preprocess.crop_box`` in int64 TF ops (same integers): (top, left, ch, cw)."""
    hh, ww = tf.constant(height, tf.int64), tf.constant(width, tf.int64)
    one = tf.constant(1, tf.int64)
    wide = w * hh > h * ww
    ch = tf.where(wide, h, tf.maximum(one, (w * hh) // ww))
    cw = tf.where(wide, tf.maximum(one, (h * ww) // hh), w)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resize_image(img: tf.Tensor, image_size: Sequence[int], resize: str = "squash") -> tf.Tensor:
    """uint8 (h, w, 3) -> uint8 (H, W, 3) by ``resize`` mode (squash | letterbox | crop), rounded like the device."""
    mode = check_resize(resize)
    height, width = int(image_size[0]), int(image_size[1])
    shape = tf.shape(img, out_type=tf.int64)
    h, w = shape[0], shape[1]
    if mode == "letterbox":
        nh, nw = tf_letterbox_size(h, w, height, width)
        out = _resize_round(img, tf.cast(tf.stack([nh, nw]), tf.int32))
        top, left = (height - nh) // 2, (width - nw) // 2
        zero = tf.constant(0, tf.int64)
        out = tf.pad(out, tf.stack([tf.stack([top, height - nh - top]), tf.stack([left, width - nw - left]),
                                    tf.stack([zero, zero])]))
    elif mode == "crop":
        top, left, ch, cw = tf_crop_box(h, w, height, width)
        out = _resize_round(img[top:top + ch, left:left + cw], (height, width))
    else:
        out = _resize_round(img, (height, width))
    out.set_shape([height, width, img.shape[-1]])
    return out


def load_image(path: tf.Tensor, image_size: Sequence[int], channels: int = 3, resize: str = "squash") -> tf.Tensor:
    """Decode, resize (bilinear, antialias; ``resize`` mode) and round to uint8 (H, W, channels)."""
    return prepare_image(decode_image(path), image_size, channels, resize)


def prepare_image(img: tf.Tensor, image_size: Sequence[int], channels: int = 3, resize: str = "squash") -> tf.Tensor:
    """Decoded uint8 (h, w, 3) -> resized, rounded uint8 (H, W, channels), as every source feeds the model."""
    img = resize_image(img, image_size, resize)
    if channels == 1:
        img = tf.image.rgb_to_grayscale(img)
    img.set_shape([*image_size, channels])
    return img


def _options() -> tf.data.Options:
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    opts.deterministic = True
    return opts


def should_cache(n: int, data_cfg) -> bool:
    """Cache decoded images in memory when asked, or ('auto') when they fit in 2 GB."""
    if data_cfg.cache != "auto":  # before reading image_size: it may still be "auto" here
        return data_cfg.cache == "memory"
    h, w = data_cfg.image_size
    return n * h * w * data_cfg.channels < CACHE_LIMIT_BYTES


def make_dataset(paths: Sequence[str], labels: Sequence[int] | np.ndarray, num_classes: int, data_cfg,
                 training: bool, seed: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
    """(float32 image 0..255 (H, W, C), one-hot float32 label) batches for fit / evaluate."""
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    for key in ("image_size", "resize"):
        if getattr(data_cfg, key) == "auto":
            raise ConfigError(f"data.{key} is still 'auto': resolve it first with kdefect.data.recipe.resolve_auto.")
    size, ch, resize = tuple(data_cfg.image_size), data_cfg.channels, check_resize(data_cfg.resize)
    batch = int(batch_size or data_cfg.batch_size)
    n = len(paths)
    cache = should_cache(n, data_cfg)
    balanced = training and getattr(data_cfg, "sampling", "shuffle") == "balanced" and n > 0
    if training and not cache and data_cfg.cache == "auto":
        log.info("%d decoded images exceed the %d GB cache: every epoch decodes every file again. A packed data "
                 "set streams faster: kdefect data pack SOURCE OUT, then data.source=tfrecord:OUT (docs/scale.md).",
                 n, CACHE_LIMIT_BYTES // 1024**3)

    def decode(p: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return load_image(p, size, ch, resize), y

    if balanced:
        from .balanced import balanced_stream

        ds = balanced_stream(paths, np.asarray(labels), decode, cache, seed=seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(map(str, paths)), tf.string),
                                                 tf.constant(np.asarray(labels, np.int64))))
        if training and not cache:  # shuffling names is cheap: full buffer
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
            if training:
                ds = ds.shuffle(min(max(n, 1), 20000), seed=seed, reshuffle_each_iteration=True)
    log.debug("dataset: %d images, training=%s, cache=%s, balanced=%s, batch=%d", n, training, cache, balanced, batch)
    return finish_dataset(ds, num_classes, data_cfg, training, seed, batch)


def finish_dataset(ds: tf.data.Dataset, num_classes: int, data_cfg, training: bool, seed: int, batch: int,
                   options: tf.data.Options | None = None) -> tf.data.Dataset:
    """(uint8 image, int label) elements -> float32 / one-hot, augmented (training), batched, prefetched.

    The tail every image source shares, so folder and packed data train alike.
    """
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes, dtype=tf.float32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if training and is_active(data_cfg.augment):
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_image(xy[0], s, data_cfg.augment, tuple(data_cfg.image_size)), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options or _options())


def load_images(paths: Sequence[str], image_size: Sequence[int], channels: int = 3,
                batch_size: int = 64, resize: str = "squash") -> np.ndarray:
    """uint8 (N, H, W, C) images, resized exactly as the tf.data pipeline does (``resize`` mode)."""
    size = tuple(image_size)
    check_resize(resize)
    if not len(paths):
        return np.zeros((0, *size, channels), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(map(str, paths)), tf.string))
    ds = ds.map(lambda p: load_image(p, size, channels, resize), num_parallel_calls=tf.data.AUTOTUNE)
    return np.concatenate([b.numpy() for b in ds.batch(batch_size)], axis=0)
