"""Fixtures for detection tests: 64 px synthetic VOC data and one tiny trained YOLOv8 run (shared)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def det_voc_root(synthetic_cache) -> Path:
    """VOC-layout synthetic data at 64 px: 5 classes x 16 images ('good' images have no boxes)."""
    from kdefect.config import SyntheticConfig
    from kdefect.data.synthetic import materialize_synthetic

    return materialize_synthetic(SyntheticConfig(n_per_class=16, size=64, seed=1), "voc", synthetic_cache)


@pytest.fixture(scope="session")
def tiny_det_cfg(det_voc_root, tmp_path_factory):
    """Smallest YOLOv8 (yolo_v8_tiny) at 64 px, 4 epochs x 5 steps = 20 training steps."""
    from kdefect.config import load_config

    runs = tmp_path_factory.mktemp("det-runs")
    return load_config(overrides=[
        "task=detect", "name=tiny", f"runs_dir={runs}", f"data.source=voc:{det_voc_root}", "data.image_size=[64,64]",
        "data.batch_size=8", "detect.backbone=yolo_v8_tiny", "detect.jitter=[]", "detect.score_threshold=0.05",
        "train.epochs=4", "train.steps_per_epoch=5", "train.learning_rate=0.003",
    ])


@pytest.fixture(scope="session")
def tiny_det_run(tiny_det_cfg):
    """Trained through the shared lifecycle (the detect task's train hook), so it also has its reject threshold and
    verdict (calibration.json). It keeps the epoch with the best validation mAP (``train.monitor=val_map50``), so
    the one fit also covers that monitor (test_train_export.py); the default monitor trains in the other fits."""
    import dataclasses

    from kdefect import fit

    cfg = dataclasses.replace(tiny_det_cfg, train=dataclasses.replace(tiny_det_cfg.train, monitor="val_map50"))
    return fit(cfg, quiet=True)
