"""Shared pytest fixtures (add yours; do not rewrite others')."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


# --- data (kdefect.data) ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    """A session-private kdefect cache folder for generated data."""
    return tmp_path_factory.mktemp("kdefect-cache")


@pytest.fixture(scope="session")
def synthetic_cfg():
    """Small synthetic config: 5 classes x 12 images, 32 px (seed 0)."""
    from kdefect.config import SyntheticConfig

    return SyntheticConfig(n_per_class=12, size=32, seed=0, contrast=3.0)


@pytest.fixture(scope="session")
def synthetic_root(synthetic_cfg, synthetic_cache) -> Path:
    """Class-per-folder synthetic data: <root>/<class>/<class>_<i>.png (good, scratch, spot, crack, patch)."""
    from kdefect.data.synthetic import materialize_synthetic

    return materialize_synthetic(synthetic_cfg, "folder", synthetic_cache)


@pytest.fixture(scope="session")
def synthetic_voc_root(synthetic_cfg, synthetic_cache) -> Path:
    """VOC-layout synthetic data: <root>/images/*.png + <root>/annotations/*.xml ('good' images have no objects)."""
    from kdefect.data.synthetic import materialize_synthetic

    return materialize_synthetic(synthetic_cfg, "voc", synthetic_cache)


# --- tiny trained classifiers on easy data (export, optimize) ----------------------------------------------------
EASY_CLASSES = ["good", "dark", "red"]  # tests/export/conftest.py's handmade_run uses the same order and size
EASY_SIZE = 32


def easy_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes a tiny CNN separates in a few epochs: mid grey, dark, red (uint8, noisy)."""
    rng = np.random.default_rng(seed)
    base = {"good": (128, 128, 128), "dark": (40, 40, 40), "red": (220, 60, 60)}
    xs, ys = [], []
    for k, c in enumerate(EASY_CLASSES):
        img = np.array(base[c], np.float32) + rng.normal(0, 18, (n_per_class, EASY_SIZE, EASY_SIZE, 3))
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
    model = build_classifier(len(EASY_CLASSES), "tiny_cnn", input_size=(EASY_SIZE, EASY_SIZE), dropout=0.0)
    _train(model, *easy_train, epochs=12)
    return model


@pytest.fixture(scope="session")
def trained_attention_model(easy_train):
    """tiny_cnn with SE inside the blocks and a CBAM layer on top, trained like ``trained_model``."""
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(len(EASY_CLASSES), "tiny_cnn", input_size=(EASY_SIZE, EASY_SIZE), dropout=0.0, attention="cbam",
                             attention_impl="layer")
    _train(model, *easy_train, epochs=12)
    return model


# --- a real fit (engine, cli) -------------------------------------------------------------------------------------
def tiny_config(tmp_path, *overrides: str):
    """A fast classify config on 48 px synthetic data that a tiny CNN learns in seconds."""
    from kdefect.config import load_config

    base = [
        f"runs_dir={tmp_path}",
        "name=tiny",
        "data.source=synthetic",
        "data.synthetic.n_per_class=60",
        "data.synthetic.size=48",
        "data.synthetic.contrast=2.5",
        "data.image_size=[48, 48]",
        "data.batch_size=16",
        "model.backbone=tiny_cnn",
        "train.epochs=15",
        "model.pooling=max",
        "train.learning_rate=0.003",
    ]
    return load_config(None, [*base, *overrides])


@pytest.fixture(scope="session")
def make_config():
    """Factory: ``make_config(tmp_path, "train.epochs=3", ...)`` -> a tiny, fast Config."""
    return tiny_config


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory):
    """A complete run folder trained on synthetic data (about 20 s on 2 cores)."""
    import os

    from kdefect.engine import fit

    tmp = tmp_path_factory.mktemp("runs")
    os.environ.setdefault("KDEFECT_CACHE", str(tmp_path_factory.mktemp("cache")))
    return fit(tiny_config(tmp), quiet=True)


# --- a tiny run on planted-defect images, built without the engine (trust, cli) ---------------------------------
# Why not ``kdefect.engine.fit``: the trust tests check the trust layer, so the run is built directly (PNG folders,
# the real split writer and classifier, a few epochs in memory) to keep it small, fast and independent of the engine.
TRUST_CLASSES = ["good", "scratch", "spot", "patch"]


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
    for c in TRUST_CLASSES:
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
    for ci, c in enumerate(TRUST_CLASSES):
        files = sorted((data_root / c).glob("*.png"))
        paths += [str(f) for f in files]
        labels += [ci] * len(files)
    labels = np.asarray(labels)
    split = stratified_split(labels, (0.5, 0.25, 0.25), seed=seed)
    run = RunDir.create(root, "trust-run", exist_ok=True)
    cfg = load_config(None, [f"data.source={data_root}", f"data.image_size=[{size},{size}]", f"seed={seed}",
                             f"model.attention={attention}", "data.good_label=good"])
    cfg.save(run.config_path)
    run.save_classes(TRUST_CLASSES, "good")
    save_split(run.path, SimpleNamespace(root=data_root, paths=paths, labels=labels, classes=TRUST_CLASSES), split)
    x = load_images(paths, (size, size), 3).astype(np.float32)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    model = build_classifier(len(TRUST_CLASSES), input_size=(size, size), attention=attention, dropout=0.2)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    tr, va, te = split["train"], split["val"], split["test"]
    h = model.fit(x[tr], labels[tr], validation_data=(x[va], labels[va]), epochs=epochs, batch_size=8, verbose=0)
    model.save(run.model_path)
    keys = list(h.history)
    rows = ["epoch," + ",".join(keys)] + [f"{e}," + ",".join(f"{h.history[k][e]:.6f}" for k in keys)
                                          for e in range(epochs)]
    (run.path / "history.csv").write_text("\n".join(rows) + "\n")
    probs = model.predict(x[te], verbose=0)
    m = classification_metrics(labels[te], probs, TRUST_CLASSES, "good")
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
    return SimpleNamespace(CLASSES=TRUST_CLASSES, sample=easy_sample)


@pytest.fixture(scope="session")
def calibrated(trust_run):
    """``trust_run`` calibrated (target risk 2%): (run path, calibration dict); trust and cli tests."""
    from kdefect.trust.calibrate import calibrate_run

    return trust_run, calibrate_run(trust_run, target_risk=0.02)


@pytest.fixture
def train_step_traces(monkeypatch):
    """``count(cls)`` -> a list that grows by one each time ``cls.train_step`` is traced (its Python body runs only
    while ``tf.function`` traces the train function); the patch is undone after the test."""

    def count(cls: type) -> list[int]:
        traces: list[int] = []
        step = cls.train_step

        def counted(self, *args, **kwargs):
            traces.append(1)
            return step(self, *args, **kwargs)

        monkeypatch.setattr(cls, "train_step", counted)
        return traces

    return count
