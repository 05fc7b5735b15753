"""Export fixtures: easy synthetic data, a tiny trained classifier, and a run folder around it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLASSES = ["good", "dark", "red"]
SIZE = 32


def easy_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes a tiny CNN separates in a few epochs: mid grey, dark, red (uint8, noisy)."""
    rng = np.random.default_rng(seed)
    base = {"good": (128, 128, 128), "dark": (40, 40, 40), "red": (220, 60, 60)}
    xs, ys = [], []
    for k, c in enumerate(CLASSES):
        img = np.array(base[c], np.float32) + rng.normal(0, 18, (n_per_class, SIZE, SIZE, 3))
        xs.append(np.clip(img, 0, 255).astype(np.uint8))
        ys += [k] * n_per_class
    x = np.concatenate(xs)
    x[:, 0, 0, :] = 0  # every image spans the full pixel range, like real photos
    x[:, -1, -1, :] = 255
    return x, np.array(ys)


def _train(model, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    from kdefect.keras import keras

    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype(np.float32), y, epochs=epochs, batch_size=16, verbose=0, shuffle=True)


@pytest.fixture(scope="session")
def easy_train() -> tuple[np.ndarray, np.ndarray]:
    return easy_images(20, seed=1)


@pytest.fixture(scope="session")
def easy_test() -> tuple[np.ndarray, np.ndarray]:
    return easy_images(10, seed=2)


@pytest.fixture(scope="session")
def trained_model(easy_train):
    """tiny_cnn (build_classifier) trained to ~100% on the easy data."""
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(len(CLASSES), "tiny_cnn", input_size=(SIZE, SIZE), dropout=0.0)
    _train(model, *easy_train, epochs=12)
    return model


@pytest.fixture(scope="session")
def trained_attention_model(easy_train):
    """tiny_cnn with SE inside the blocks and a CBAM layer on top, trained like ``trained_model``."""
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(len(CLASSES), "tiny_cnn", input_size=(SIZE, SIZE), dropout=0.0, attention="cbam",
                             attention_impl="layer")
    _train(model, *easy_train, epochs=12)
    return model


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
