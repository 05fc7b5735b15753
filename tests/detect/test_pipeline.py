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


def test_repeat_factors_raise_only_classes_below_their_even_share():
    from kdefect.data.detection_pipeline import repeat_factors

    even = [np.array([0]), np.array([1]), np.array([2]), np.array([0, 1, 2])]
    assert (repeat_factors(even, 3) == 1.0).all()  # every class at or above 1/3 of the images
    labels = [np.array([0])] * 8 + [np.array([1])] * 2 + [np.array([0, 1])] + [np.zeros(0, np.int64)] * 2
    r = repeat_factors(labels, 4)  # class 3 absent: K = 2 classes present, t = 1/2
    np.testing.assert_allclose(r[8:11], np.sqrt(0.5 / (3 / 13)))  # class 1 in 3 of 13 images; an image takes its max
    assert (r[:8] == 1.0).all() and (r[11:] == 1.0).all()  # the common class and images without objects


def test_balanced_sampling_draws_rare_images_more_often_with_their_own_boxes():
    from kdefect.data.detection_pipeline import repeat_factors

    n = 12
    labels = [np.array([0])] * 10 + [np.array([1])] * 2
    imgs = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    boxes = [np.array([[1, 1, 10 + i, 10]], np.float32) for i in range(n)]
    arr = DetArrays(imgs, boxes, labels, [(32, 32)] * n, [f"{i}.png" for i in range(n)])
    ds = make_dataset(arr, 4, True, max_boxes=2, flip=False, jitter=[], seed=1, weights=repeat_factors(labels, 2))
    epochs = []
    for _ in range(20):
        drawn = []
        for x, y in ds:
            for img, bb, cc in zip(x.numpy(), y["boxes"].numpy(), y["classes"].numpy()):
                i = int(img[0, 0, 0])
                drawn.append(i)
                assert cc[0] == labels[i][0] and bb[0, 2] == 10 + i  # the image's own boxes came with it
        assert len(drawn) == n  # an epoch keeps the training split's length
        epochs.append(drawn)
    assert epochs[0] != epochs[1]  # redrawn each epoch
    rare = np.isin(np.concatenate(epochs), [10, 11]).mean()
    assert rare > 0.23  # expected 2 x 2.0 / (10 + 2 x 2.0) = 0.29 (r = sqrt(0.5 / (2/12))); uniform would be 0.17


def test_detection_subsample_cuts_training_images_by_class(det_voc_root, tmp_path):
    from kdefect.config import load_config
    from kdefect.engine.trainer import prepare_run

    base = ["task=detect", f"runs_dir={tmp_path}", f"data.source=voc:{det_voc_root}", "data.image_size=[64,64]"]
    _, index, full = prepare_run(load_config(overrides=[*base, "name=full"]))
    _, _, cut = prepare_run(load_config(overrides=[*base, "name=cut", "data.subsample={scratch: 0.25}"]))
    c = index.classes.index("scratch")
    n_full, n_cut = (int((index.labels[np.asarray(s["train"])] == c).sum()) for s in (full, cut))
    assert n_cut == max(1, round(0.25 * n_full)) and n_full > n_cut
    np.testing.assert_array_equal(full["test"], cut["test"])  # only training is cut
