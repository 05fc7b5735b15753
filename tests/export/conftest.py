"""Export fixtures: a run folder around the tiny trained classifier (easy data and models: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLASSES = ["good", "dark", "red"]  # tests/conftest.py EASY_CLASSES / EASY_SIZE: the data the models learnt
SIZE = 32


def _write_split(folder: Path, name: str, x: np.ndarray, y: np.ndarray, lines: list[str]) -> None:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        p = folder / CLASSES[lab] / f"{name}_{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        lines.append(f"{p}\t{CLASSES[lab]}")


@pytest.fixture(scope="session")
def handmade_run(tmp_path_factory, trained_model, easy_train, easy_test) -> Path:
    """A run folder in the RunDir layout: config.yaml, classes.json, split/, model.keras, calibration.json."""
    from kdefect.config import Config
    from kdefect.core.run import RunDir
    from kdefect.utils.io import write_json, write_text

    assert easy_train[0].shape[1] == SIZE and int(easy_train[1].max()) == len(CLASSES) - 1  # the data it learnt
    root = tmp_path_factory.mktemp("export-run")
    run = RunDir.create(root / "runs", "tiny")
    cfg = Config()
    cfg.data.image_size = [SIZE, SIZE]
    cfg.data.batch_size = 16
    cfg.data.augment.flip = cfg.data.augment.rot90 = False
    cfg.save(run.config_path)
    run.save_classes(CLASSES, "good")
    images = root / "images"
    for split, (x, y) in {"train": easy_train, "val": easy_test, "test": easy_test}.items():
        lines: list[str] = []
        _write_split(images / split, split, x, y, lines)
        write_text(run.path / "split" / f"{split}.txt", "\n".join(lines) + "\n")
    trained_model.save(run.model_path)
    write_json(run.path / "calibration.json", {"temperature": 1.5, "review_below": 0.6,
                                               "decision": {"good_label": "good", "good_min_prob": 0.7},
                                               "device_ood": {"method": "msp", "threshold": 0.45, "val_tpr": 0.95},
                                               "ood": {"score": "energy", "threshold": -3.0},
                                               "verdict": {"verdict": "READY", "ready": True, "reasons": []}})
    return run.path
