"""Fixtures for the edge runtime: tiny INT8 TFLite models with sidecars, and bad input files.

TensorFlow is allowed here (tests are not the runtime): the models are built
and converted with ``kdefect.export.tflite.to_tflite`` exactly like a real
export, then the runtime under test loads them without TensorFlow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def build_tflite(out: Path, size: tuple[int, int], labels: list[str], images: np.ndarray | None = None,
                 y: np.ndarray | None = None, channels: int = 3, epochs: int = 3, seed: int = 0,
                 widths: tuple[int, ...] = (8, 16), lr: float = 3e-3) -> Path:
    """A tiny CNN (in-model Rescaling, softmax), optionally trained a little, exported INT8 (uint8 I/O) + sidecar."""
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.export.tflite import to_tflite
    from kdefect.keras import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((*size, channels))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    for w in widths:
        x = keras.layers.Conv2D(w, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)  # small defects: max keeps their response
    out_t = keras.layers.Dense(len(labels), activation="softmax")(x)
    model = keras.Model(inp, out_t)
    rng = np.random.default_rng(seed)
    if images is None:
        images = rng.integers(0, 256, (16, *size, channels)).astype(np.float32)
    if y is not None and epochs:
        model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
        model.fit(images, y, epochs=epochs, batch_size=16, verbose=0)
    path = to_tflite(model, out, "int8", representative=images.astype(np.float32))
    write_sidecar(path, Sidecar(sha256="", task="classify", labels=list(labels),
                                input=InputSpec(size=list(size), channels=channels, dtype="uint8"),
                                quantization="int8", source_run="tests/edge"))
    return path


def folder_images(root: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class-per-folder PNGs -> (images resized like training, labels, class names)."""
    from kdefect.edge.preprocess import load_image, prepare

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            xs.append(prepare(load_image(f, 3, None), size))
            ys.append(i)
    return np.stack(xs), np.asarray(ys), classes


@pytest.fixture(scope="session")
def edge_model(synthetic_root, tmp_path_factory) -> Path:
    """48x48 INT8 model trained briefly on the synthetic 32 px images (so the runtime upsamples)."""
    x, y, classes = folder_images(synthetic_root, (48, 48))
    return build_tflite(tmp_path_factory.mktemp("edge-model") / "model.tflite", (48, 48), classes, x, y, epochs=8)


@pytest.fixture()
def model_copy(edge_model, tmp_path) -> Path:
    """A private copy of ``edge_model`` + sidecar that a test may damage."""
    dst = tmp_path / "m" / "model.tflite"
    dst.parent.mkdir()
    shutil.copy(edge_model, dst)
    shutil.copy(edge_model.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.fixture()
def image_folder(synthetic_root, tmp_path) -> Path:
    """A flat folder with 2 images per synthetic class (10 PNGs)."""
    out = tmp_path / "imgs"
    out.mkdir()
    for c in sorted(p for p in synthetic_root.iterdir() if p.is_dir()):
        for f in sorted(c.iterdir())[:2]:
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture()
def bad_files(synthetic_root, tmp_path) -> dict[str, Path]:
    """One file per kind of bad input a line produces, keyed by kind."""
    out = tmp_path / "bad"
    out.mkdir()
    src = next(p for p in sorted(synthetic_root.rglob("*.png")))
    rgb = Image.open(src).convert("RGB")
    files = {}
    jpg = out / "truncated.jpg"
    rgb.resize((64, 64)).save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    files["truncated"] = jpg
    files["text"] = out / "notes.txt"
    files["text"].write_text("not an image\n")
    files["empty"] = out / "empty.png"
    files["empty"].write_bytes(b"")
    files["gray"] = out / "gray.png"
    rgb.convert("L").save(files["gray"])
    files["rgba"] = out / "rgba.png"
    rgb.convert("RGBA").save(files["rgba"])
    files["small"] = out / "small.png"
    rgb.resize((20, 24)).save(files["small"])
    return files
