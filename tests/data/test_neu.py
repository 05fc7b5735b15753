"""NEU-DET (skipped when the dataset is absent): index, labels, TFDS builder."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.config import DataConfig
from kdefect.data.neu import NEU_CLASSES, neu_class_of, neu_dir

pytestmark = [pytest.mark.neu, pytest.mark.skipif(neu_dir() is None, reason="NEU-DET not found "
                                                  "(set $KDEFECT_NEU_DIR or put it in ../shared/datasets/neu-det)")]


def test_neu_index_classify_and_detect():
    from kdefect.data.sources import index_dataset

    idx = index_dataset(DataConfig(source=str(neu_dir())))
    assert len(idx) == 1800 and idx.classes == list(NEU_CLASSES) and not idx.skipped
    agree = np.mean([neu_class_of(p) == idx.classes[lab] for p, lab in zip(idx.paths, idx.labels)])
    assert agree > 0.99  # largest-area label == file-name class for all but a few images
    det = index_dataset(DataConfig(source="neu"), image_labels=False)
    assert sum(len(b) for b in det.boxes) == 4189
    assert all((b[:, 2:] <= 200).all() for b in det.boxes)


@pytest.mark.slow
def test_tfds_neu_det_offline(tmp_path):
    import tensorflow_datasets as tfds

    import kdefect.data.tfds_neu  # noqa: F401  (registers neu_det)

    ds, info = tfds.load("neu_det", split="train", data_dir=str(tmp_path), with_info=True,
                         download_and_prepare_kwargs={"download_config":
                                                      tfds.download.DownloadConfig(manual_dir=str(neu_dir()))})
    assert info.splits["train"].num_examples == 1800
    assert info.features["label"].names == list(NEU_CLASSES)
    nboxes = 0
    for ex in tfds.as_numpy(ds.take(20)):
        assert ex["image"].shape == (200, 200, 3)
        bb = ex["objects"]["bbox"]
        assert ((bb >= 0) & (bb <= 1)).all() and (bb[:, 2] > bb[:, 0]).all()
        assert info.features["label"].int2str(ex["label"]) == neu_class_of(ex["image/filename"].decode())
        nboxes += len(bb)
    assert nboxes >= 20


@pytest.mark.slow
def test_tfds_source_materializes_files(tmp_path):
    from kdefect.data.sources import index_folder
    from kdefect.data.tfds_source import materialize_tfds

    cfg = DataConfig()
    root = materialize_tfds("neu_det", True, cache_dir=tmp_path / "cache", data_dir=str(tmp_path / "tfds"))
    idx = index_folder(str(root), cfg)
    assert len(idx) == 1800 and idx.classes == list(NEU_CLASSES)
    assert np.bincount(idx.labels).tolist() == [300] * 6  # the file-name label
