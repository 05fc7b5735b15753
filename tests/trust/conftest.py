"""Fixtures for the trust tests: easy planted-defect images and a tiny run folder built without the engine.

Why not ``kdefect.engine.fit``: these tests check the trust layer, so the run is
built directly (PNG folders, the real split writer and classifier, a few epochs
in memory) to keep it small, fast and independent of engine changes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

CLASSES = ["good", "scratch", "spot", "patch"]


def easy_sample(cls: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A plainly visible planted defect on a noisy surface and its xyxy box (kdefect's synthetic set is
    deliberately hard; these tests need a model that learns in seconds)."""
    img = rng.uniform(90, 140) + rng.normal(0, 6, (size, size))
    boxes = np.zeros((0, 4), np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    if cls != "good":
        r = size // 8
        cx, cy = rng.integers(r + 1, size - r - 1, 2)
        if cls == "spot":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif cls == "patch":
            mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
        else:  # scratch: a horizontal or vertical bar
            mask = (abs(yy - cy) <= 1) & (abs(xx - cx) <= 2 * r) if rng.random() < 0.5 else \
                (abs(xx - cx) <= 1) & (abs(yy - cy) <= 2 * r)
        img = img + np.where(mask, 80.0 if cls != "spot" else -70.0, 0.0)
        ys, xs = np.nonzero(mask)
        boxes = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    rgb = np.clip(np.repeat(img[..., None], 3, -1), 0, 255).astype(np.uint8)
    return rgb, boxes


def write_easy_data(root: Path, n_per_class: int, size: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(easy_sample(c, size, rng)[0]).save(root / c / f"{c}_{i}.png")
    return root


def make_run(root: Path, data_root: Path, size: int, epochs: int, seed: int = 0, attention: str = "none") -> Path:
    """A complete small run folder (config, classes, split, model.keras, history.csv, metrics.json)."""
    from kdefect.config import load_config
    from kdefect.core.run import RunDir
    from kdefect.data.pipeline import load_images
    from kdefect.data.split import save_split, stratified_split
    from kdefect.engine.metrics import classification_metrics
    from kdefect.keras import keras, tf
    from kdefect.tasks.classify import build_classifier

    paths, labels = [], []
    for ci, c in enumerate(CLASSES):
        files = sorted((data_root / c).glob("*.png"))
        paths += [str(f) for f in files]
        labels += [ci] * len(files)
    labels = np.asarray(labels)
    split = stratified_split(labels, (0.5, 0.25, 0.25), seed=seed)
    run = RunDir.create(root, "trust-run", exist_ok=True)
    cfg = load_config(None, [f"data.source={data_root}", f"data.image_size=[{size},{size}]", f"seed={seed}",
                             f"model.attention={attention}", "data.good_label=good"])
    cfg.save(run.config_path)
    run.save_classes(CLASSES, "good")
    save_split(run.path, SimpleNamespace(root=data_root, paths=paths, labels=labels, classes=CLASSES), split)
    x = load_images(paths, (size, size), 3).astype(np.float32)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    model = build_classifier(len(CLASSES), input_size=(size, size), attention=attention, dropout=0.2)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    tr, va, te = split["train"], split["val"], split["test"]
    h = model.fit(x[tr], labels[tr], validation_data=(x[va], labels[va]), epochs=epochs, batch_size=8, verbose=0)
    model.save(run.model_path)
    keys = list(h.history)
    rows = ["epoch," + ",".join(keys)] + [f"{e}," + ",".join(f"{h.history[k][e]:.6f}" for k in keys)
                                          for e in range(epochs)]
    (run.path / "history.csv").write_text("\n".join(rows) + "\n")
    probs = model.predict(x[te], verbose=0)
    m = classification_metrics(labels[te], probs, CLASSES, "good")
    m["split"] = "test"
    run.write_json("metrics.json", m)
    return run.path


@pytest.fixture(scope="session")
def trust_data(tmp_path_factory) -> Path:
    """Easy planted-defect class folders: 4 classes x 48 images, 32 px."""
    return write_easy_data(tmp_path_factory.mktemp("trust-data"), 48, 32)


@pytest.fixture(scope="session")
def trust_run(tmp_path_factory, trust_data) -> Path:
    """A tiny trained run (tiny_cnn, 32 px, 8 epochs) shared by the trust tests (read-mostly)."""
    return make_run(tmp_path_factory.mktemp("trust-runs"), trust_data, size=32, epochs=8)


@pytest.fixture(scope="session")
def easy():
    """The helpers above for test modules (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(CLASSES=CLASSES, sample=easy_sample)
