"""Detection tf.data: ragged boxes in, padded dense targets out; empty images allowed; boxes follow flips."""

from __future__ import annotations

import numpy as np

from kdefect.data.boxes import scale_boxes
from kdefect.data.detection_pipeline import DetArrays, load_arrays, make_dataset


def _arrays(n=6):
    imgs = np.zeros((n, 64, 64, 3), np.uint8)
    boxes, labels = [], []
    for i in range(n):
        if i % 2:
            boxes.append(np.zeros((0, 4), np.float32))
            labels.append(np.zeros(0, np.int64))
        else:
            boxes.append(np.array([[4, 8, 20, 40], [30, 30, 60, 50]], np.float32)[: 1 + i % 3])
            labels.append(np.array([1, 2])[: 1 + i % 3])
            for x0, y0, x1, y1 in boxes[-1].astype(int):
                imgs[i, y0:y1, x0:x1] = 255
    return DetArrays(imgs, boxes, labels, [(64, 64)] * n, [f"{i}.png" for i in range(n)])


def test_eval_batches_are_dense_and_padded():
    x, y = next(iter(make_dataset(_arrays(), 4, False, max_boxes=5)))
    assert x.shape == (4, 64, 64, 3) and y["boxes"].shape == (4, 5, 4) and y["classes"].shape == (4, 5)
    np.testing.assert_allclose(y["boxes"][0, 0], [4, 8, 20, 40])
    assert (y["classes"][1].numpy() == -1).all()  # an image without objects is an all-padding row


def test_training_augmentation_keeps_boxes_on_the_object():
    for x, y in make_dataset(_arrays(), 2, True, max_boxes=5, flip=True, seed=3).take(3):
        for img, bb, cc in zip(x.numpy(), y["boxes"].numpy(), y["classes"].numpy()):
            for b in bb[cc >= 0]:
                x0, y0, x1, y1 = np.round(b).astype(int)
                assert img[y0:y1, x0:x1].mean() > 200  # the white block moved with its box


def test_load_arrays_scales_boxes(det_voc_root):
    from kdefect.config import DataConfig
    from kdefect.data.sources import index_dataset

    index = index_dataset(DataConfig(source=f"voc:{det_voc_root}"), image_labels=False)
    arr = load_arrays(index.subset(np.arange(4)), (32, 32))
    assert arr.images.shape == (4, 32, 32, 3) and arr.sizes[0] == (64, 64)
    np.testing.assert_allclose(arr.boxes[0], scale_boxes(index.boxes[0], (64, 64), (32, 32)))
