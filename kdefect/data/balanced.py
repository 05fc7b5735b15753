"""Class-balanced sampling for the training split (``data.sampling: balanced``).

Why sampling and not only a weighted loss: with a 30:1 good class a batch of
32 holds one defect or none, so most steps carry no defect gradient however it
is weighted.  ``tf.data.Dataset.sample_from_datasets`` over one stream per
class gives every class the same share of each batch (rare classes repeat,
with augmentation applied after sampling so repeats differ).  An epoch keeps
its usual length: as many images as the training split holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from kdefect.keras import tf


def balanced_stream(paths: Sequence[str], labels: np.ndarray, decode: Callable, cache: bool,
                    seed: int = 0) -> tf.data.Dataset:
    """(decoded image, label index) pairs, each present class drawn with equal probability, ``len(paths)`` per epoch.

    ``decode``: ``(path, label) -> (image, label)`` as in the plain pipeline; each class's stream is decoded,
    cached (when ``cache``) and reshuffled on its own, then repeated forever and mixed.
    """
    labels = np.asarray(labels, np.int64)
    paths = np.asarray(list(map(str, paths)))
    streams = []
    for i, c in enumerate(np.unique(labels)):
        sel = labels == c
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths[sel], tf.string),
                                                 tf.constant(labels[sel], tf.int64)))
        n = int(sel.sum())
        if cache:
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
            ds = ds.shuffle(min(n, 20000), seed=seed + i, reshuffle_each_iteration=True)
        else:
            ds = ds.shuffle(n, seed=seed + i, reshuffle_each_iteration=True)
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        streams.append(ds.repeat())
    if not streams:
        raise ValueError("balanced sampling needs at least one training image")
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(streams)] * len(streams), seed=seed,
                                                   rerandomize_each_iteration=True)
    return mixed.take(len(paths))
