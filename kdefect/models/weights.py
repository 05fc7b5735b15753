"""Weight sources for backbones: ``none``, ``imagenet`` or a local file.

Local files are matched to layers *by name* and layers whose shapes differ are
skipped (a head trained for other classes, a different input channel count),
so a user can start from any kdefect checkpoint or a compatible Keras file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdefect.errors import ModelError
from kdefect.keras import keras

log = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".h5", ".hdf5", ".keras")


def weights_path(weights: str | Path) -> Path:
    """The file behind ``model.weights``: the path itself, or a kdefect run folder's ``model.keras``.

    A run folder is accepted because that is what a user has at hand: the run of another line, product or data
    set, whose network becomes the starting point (``detect.backbone_weights`` takes a run the same way).
    ModelError when neither exists.
    """
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ModelError(f"model.weights '{weights}' is a folder but not a kdefect run (no config.yaml); give a "
                             "run folder or a .h5 / .weights.h5 / .keras file.")
        if not (path / "model.keras").is_file():
            raise ModelError(f"model.weights: run '{weights}' has no model.keras; did its fit finish?")
        return path / "model.keras"
    if not path.is_file():
        raise ModelError(
            f"weights file '{weights}' does not exist. Use model.weights=none (random init), "
            "model.weights=imagenet (download), a kdefect run folder or the path of a .h5 / .weights.h5 / .keras file."
        )
    if not path.name.endswith(LOCAL_SUFFIXES):
        raise ModelError(f"weights file '{weights}' is not a .h5, .weights.h5 or .keras file; save weights in one "
                         "of those.")
    return path


def weights_kind(weights: str | None) -> str:
    """'none', 'imagenet' or 'file' (a file or a run folder that exists, else ModelError naming it)."""
    w = "none" if weights in (None, "", "none", "None") else str(weights)
    if w in ("none", "imagenet"):
        return w
    weights_path(w)
    return "file"


def call_application(builder: Callable[..., keras.Model], name: str, weights: str, **kwargs: Any) -> keras.Model:
    """Call a ``keras.applications`` constructor, turning download / shape failures into ModelError."""
    try:
        return builder(weights="imagenet" if weights == "imagenet" else None, **kwargs)
    except Exception as exc:  # urllib errors (OSError), shape checks (ValueError), h5 errors
        if weights == "imagenet" and not isinstance(exc, ValueError):
            raise ModelError(
                f"could not download the ImageNet weights for backbone '{name}' ({exc}). Check the network or "
                "proxy, pre-fill ~/.keras/models/, or use model.weights=none or a local weights file."
            ) from exc
        raise ModelError(f"cannot build backbone '{name}' with weights={weights}: {exc}") from exc


def _weight_map(model: keras.Model) -> dict[str, list[Any]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _is_positional_h5(path: Path) -> bool:
    """tf_keras 2.21 writes ``*.weights.h5`` in the Keras-3 layout: weights by position, not layer name."""
    import h5py  # lazy: h5py loads only to read a .h5 file

    with h5py.File(path, "r") as f:
        return "layer_names" not in f.attrs and "model_weights" not in f and "layers" in f


def load_local_weights(model: keras.Model, path: str | Path, strict: bool = True) -> int:
    """Load ``path`` (a file, or a run folder's model.keras) into ``model`` by layer name, skipping shape
    mismatches; returns layers loaded.

    ``.keras`` and legacy ``.h5`` files load by name. A Keras-3 layout ``.weights.h5``
    stores weights by position, so it loads only into the identical architecture
    (with ``strict=False`` it is skipped here and returns 0). ModelError when the file
    cannot be read or not a single layer matches (wrong backbone).
    """
    path = weights_path(path)
    try:
        if path.suffix == ".keras":
            source = _weight_map(keras.models.load_model(path, compile=False))
        elif _is_positional_h5(path):
            return _load_positional(model, path) if strict else 0
        else:
            source = _read_h5(path)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read weights file '{path}': {exc}") from exc
    loaded = skipped = 0
    for layer in model.layers:
        if not layer.weights or layer.name not in source:
            continue
        values = source[layer.name]
        if [tuple(w.shape) for w in layer.weights] != [tuple(v.shape) for v in values]:
            skipped += 1
            log.info("weights: skip layer %s (shape mismatch)", layer.name)
            continue
        layer.set_weights(values)
        loaded += 1
    if loaded == 0:
        raise ModelError(
            f"no layer of model '{model.name}' matches a layer in weights file '{path}' "
            f"({skipped} shape mismatches). Was it saved from the same backbone?"
        )
    log.info("weights: loaded %d layers from %s (%d skipped for shape)", loaded, path, skipped)
    return loaded


def _load_positional(model: keras.Model, path: Path) -> int:
    try:
        model.load_weights(path)
    except Exception as exc:
        raise ModelError(
            f"weights file '{path}' stores weights by position and does not fit model '{model.name}' ({exc}). "
            "Use the same backbone/classes, or save with model.save('x.keras') / save_weights('x.h5') "
            "so weights load by layer name."
        ) from exc
    log.info("weights: loaded %s by position", path)
    return sum(1 for layer in model.layers if layer.weights)


def _read_h5(path: Path) -> dict[str, list[Any]]:
    """Layer name -> weight arrays from a Keras 2 HDF5 weights or model file."""
    import h5py  # lazy: h5py loads only to read a .h5 file

    out: dict[str, list[Any]] = {}
    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])]
        if not names:
            raise ModelError(f"'{path}' holds no Keras layer weights (is it a Keras 3 .weights.h5?).")
        for name in names:
            g = group[name]
            wnames = [w.decode() if isinstance(w, bytes) else w for w in g.attrs.get("weight_names", [])]
            if wnames:
                out[name] = [g[w][()] for w in wnames]
    return out
