"""Balanced sampling really balances the batches it draws."""

from __future__ import annotations

import numpy as np

from kdefect.data.balanced import balanced_stream
from kdefect.keras import tf


def test_balanced_stream_draws_each_class_equally_and_keeps_epoch_length():
    labels = np.array([0] * 300 + [1] * 30 + [2] * 10)
    paths = [f"img{i}.png" for i in range(len(labels))]

    def decode(p, y):  # the image is irrelevant here: keep the label
        return tf.strings.length(p), y

    ds = balanced_stream(paths, labels, decode, cache=True, seed=3)
    for _ in range(2):  # two epochs: same length, reshuffled
        drawn = np.array([int(y) for _, y in ds])
        assert len(drawn) == len(labels)
        share = np.bincount(drawn, minlength=3) / len(drawn)
        assert np.all(np.abs(share - 1 / 3) < 0.08), share
    plain = np.bincount(labels) / len(labels)
    assert plain[2] < 0.03  # without balancing the rarest class would be 3% of each batch


def test_make_dataset_balances_the_training_batches(tmp_path):
    from PIL import Image

    from kdefect.config import DataConfig
    from kdefect.data.pipeline import make_dataset

    paths, labels = [], []
    for c, n in ((0, 60), (1, 6)):
        for i in range(n):
            p = tmp_path / f"{c}_{i}.png"
            Image.fromarray(np.full((20, 20, 3), 40 * c + i % 7, np.uint8)).save(p)
            paths.append(str(p))
            labels.append(c)
    cfg = DataConfig(image_size=[16, 16], resize="squash", sampling="balanced", batch_size=22)
    ys = np.concatenate([y.numpy().argmax(1) for _, y in make_dataset(paths, labels, 2, cfg, training=True)])
    assert len(ys) == 66  # three full batches: the epoch keeps the split's length
    assert 0.35 < ys.mean() < 0.65  # ~half the drawn images are the rare class (plain: 6 / 66 = 9%)
    ev = np.concatenate([y.numpy().argmax(1) for _, y in make_dataset(paths, labels, 2, cfg, training=False)])
    assert ev.tolist() == labels  # evaluation is never resampled
