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
- The cache holds those uint8 images (4x smaller than float).  Shuffling and
  augmentation come after it and are seeded (stateless ops), reshuffled per epoch.
- Distribution: ``batch_size`` is the GLOBAL batch; training drops the
  remainder so every replica gets equal batches; auto-shard policy DATA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from kdefect.keras import tf

from .augment import augment_image, is_active

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 * 1024**3
TIFF_PATTERN = r"(?i).*\.tiff?$"


def _pil_decode(path: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(path.decode()) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # scale high-bit-depth to 8 bit
            a = np.asarray(im, np.float64)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-9) * 255
            return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=-1)
        return np.asarray(im.convert("RGB"), np.uint8)


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """Any supported file -> uint8 (H, W, 3)."""

    def with_tf() -> tf.Tensor:
        img = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.cond(tf.shape(img)[-1] < 3, lambda: tf.image.grayscale_to_rgb(img[..., :1]),
                       lambda: img[..., :3])

    def with_pillow() -> tf.Tensor:
        return tf.numpy_function(_pil_decode, [path], tf.uint8, stateful=False)

    img = tf.cond(tf.strings.regex_full_match(path, TIFF_PATTERN), with_pillow, with_tf)
    img.set_shape([None, None, 3])
    return img


def load_image(path: tf.Tensor, image_size: Sequence[int], channels: int = 3) -> tf.Tensor:
    """Decode, resize (bilinear, antialias) and round to uint8 (H, W, channels)."""
    img = tf.image.resize(decode_image(path), tuple(image_size), method="bilinear", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
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
    if data_cfg.cache == "memory":
        return True
    h, w = data_cfg.image_size
    return data_cfg.cache == "auto" and n * h * w * data_cfg.channels < CACHE_LIMIT_BYTES


def make_dataset(paths: Sequence[str], labels: Sequence[int] | np.ndarray, num_classes: int, data_cfg,
                 training: bool, seed: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
    """(float32 image 0..255 (H, W, C), one-hot float32 label) batches for fit / evaluate."""
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    size, ch = tuple(data_cfg.image_size), data_cfg.channels
    batch = int(batch_size or data_cfg.batch_size)
    n = len(paths)
    cache = should_cache(n, data_cfg)
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(map(str, paths)), tf.string),
                                             tf.constant(np.asarray(labels, np.int64))))
    if training and not cache:  # shuffling names is cheap: full buffer
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda p, y: (load_image(p, size, ch), tf.one_hot(y, num_classes, dtype=tf.float32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(min(max(n, 1), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training and is_active(data_cfg.augment):
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_image(xy[0], s, data_cfg.augment, size), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
    log.debug("dataset: %d images, training=%s, cache=%s, batch=%d", n, training, cache, batch)
    return ds.with_options(_options())


def load_images(paths: Sequence[str], image_size: Sequence[int], channels: int = 3,
                batch_size: int = 64) -> np.ndarray:
    """uint8 (N, H, W, C) images, resized exactly as the tf.data pipeline does."""
    size = tuple(image_size)
    if not len(paths):
        return np.zeros((0, *size, channels), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(map(str, paths)), tf.string))
    ds = ds.map(lambda p: load_image(p, size, channels), num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return np.concatenate([b.numpy() for b in ds], axis=0)
