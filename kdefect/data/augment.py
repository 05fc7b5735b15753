"""Training-time image augmentation (tf.image, stateless, seeded).

Why stateless ops with per-element seeds: the pipeline is then reproducible
for a given ``seed`` (and still different every epoch, since the seed stream
is re-randomised per iteration) and independent of thread scheduling or of
how tf.distribute shards the data.  Images are float32 in 0..255.
"""

from __future__ import annotations

from kdefect.keras import tf


def augment_image(image: tf.Tensor, seed: tf.Tensor, aug, image_size: tuple[int, int]) -> tf.Tensor:
    """Apply the enabled ops of ``aug`` (an AugmentConfig) to one (H, W, C) image."""
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    h, w = image_size
    if aug.crop_min_area < 1.0:  # random resized crop, then back to the model size
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=s[0],
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(aug.crop_min_area, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True,
        )
        image = tf.image.resize(tf.slice(image, begin, size), (h, w), method="bilinear", antialias=True)
    if aug.flip:
        image = tf.image.stateless_random_flip_left_right(image, s[1])
        image = tf.image.stateless_random_flip_up_down(image, s[2])
    if aug.rot90 and h == w:  # a 90-degree turn would change a non-square shape
        k = tf.random.stateless_uniform([], s[3], 0, 4, dtype=tf.int32)
        image = tf.image.rot90(image, k)
    if aug.brightness > 0:
        image = image + 255.0 * tf.random.stateless_uniform([], s[4], -aug.brightness, aug.brightness)
    if aug.contrast > 0:
        image = tf.image.stateless_random_contrast(image, 1.0 - aug.contrast, 1.0 + aug.contrast, s[5])
    if aug.noise_std > 0:
        image = image + 255.0 * aug.noise_std * tf.random.stateless_normal(tf.shape(image), s[6])
    return tf.clip_by_value(image, 0.0, 255.0)


def is_active(aug) -> bool:
    """True when any augmentation op is switched on."""
    return bool(aug.flip or aug.rot90 or aug.brightness > 0 or aug.contrast > 0 or aug.crop_min_area < 1.0
                or aug.noise_std > 0)
