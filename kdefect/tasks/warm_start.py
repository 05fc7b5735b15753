"""In-domain warm start: fill a detector's backbone from a classification run or a weights file.

Why: COCO / ImageNet weights cannot be downloaded on many plant networks, but a classifier on the same images
is cheap to train.  ``detect.backbone_weights: RUN_OR_FILE`` copies every backbone layer whose name and weight
shapes match (a classifier built with the same backbone name has the same layers: ``models.backbones.yolo``
for the YOLOv8 family, the registry backbones for wrapped detectors).  A partial load would train a detector
that is silently half from scratch, so fewer than ``detect.backbone_min_match`` of the backbone's weights
matching stops the fit and names the layers that did not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ConfigError
from kdefect.keras import keras

log = logging.getLogger(__name__)


def flat_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, nested models opened (a keras-cv detector nests its backbone)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
        else:
            yield layer


def _from_h5(path: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> arrays from a Keras 2 ``.h5`` weights file (``save_weights``), nested groups opened."""
    import h5py

    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        if "layer_names" not in f.attrs:
            raise ConfigError(f"detect.backbone_weights '{path}' stores its weights by position, not by layer name "
                              "(a Keras 3 .weights.h5 file); save them with model.save_weights('NAME.h5'), or "
                              "pass the classification run folder or its .keras model.")
        for group in (n.decode() if isinstance(n, bytes) else n for n in f.attrs.get("layer_names", [])):
            g = f[group]
            for w in (n.decode() if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])):
                parts = w.split("/")  # ".../<layer>/<variable>:0": the layer owning the variable
                out.setdefault(parts[-2] if len(parts) > 1 else group, []).append(np.asarray(g[w]))
    return out


def source_weights(source: str | Path) -> tuple[dict[str, list[np.ndarray]], Path]:
    """Layer name -> weight arrays of a run folder (its ``model.keras``), a ``.keras`` model or an ``.h5`` file."""
    from kdefect.tasks.heads import load_model

    p = Path(source)
    if p.is_dir():
        if not (p / "config.yaml").is_file():
            raise ConfigError(f"detect.backbone_weights '{p}' is a folder but not a kdefect run (no config.yaml).")
        p = p / "model.keras"
        if not p.is_file():
            raise ConfigError(f"detect.backbone_weights: run '{p.parent}' has no model.keras; did its fit finish?")
    if not p.exists():
        raise ConfigError(f"detect.backbone_weights '{source}' does not exist: give a classification run folder, "
                          "a .keras model or a .h5 weights file.")
    if p.suffix == ".h5" and not _is_full_model(p):
        return _from_h5(p), p
    model = load_model(p)
    return {layer.name: layer.get_weights() for layer in flat_layers(model) if layer.weights}, p


def _is_full_model(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return "model_weights" in f and "model_config" in f.attrs


def check_held_out(source: str | Path, test_paths: list[str]) -> None:
    """Refuse a warm start from a classification run that trained on this detector's test images.

    Why: a backbone that has seen the test images (with their image labels) makes the detector's test mAP and
    escape rate optimistic, and nothing in the figures shows it.  Two fits on the same folder need not split it
    alike (a duplicate dropped in one index shifts the other's split), so the lists are compared file by file.
    A weights file carries no split: it cannot be checked, and the log says so.
    """
    from kdefect.data.split import load_split

    p = Path(source)
    if not (p.is_dir() and (p / "split" / "train.txt").is_file()):
        log.info("detect.backbone_weights '%s' is not a run folder: whether its training images include this "
                 "detector's test images cannot be checked", source)
        return
    lists = load_split(p)
    seen = {str(Path(f).resolve()) for name in ("train", "val") for f in lists[name][0]}
    leaked = [t for t in test_paths if str(Path(t).resolve()) in seen]
    if leaked:
        raise ConfigError(
            f"detect.backbone_weights '{source}': {len(leaked)} of this detector's {len(test_paths)} test images "
            f"(e.g. {Path(leaked[0]).name}) were training or validation images of that classification run, so the "
            "backbone has seen them and the test figures would be optimistic. Give the detector the classifier's "
            f"split: --set data.split_from={source}")


def load_backbone_weights(backbone: Any, source: str | Path, min_match: float = 0.9) -> dict[str, Any]:
    """Copy matching layers of ``source`` into ``backbone``; ConfigError (nothing loaded) below ``min_match``.

    The share is counted in weight values (parameters and BatchNorm statistics), so a matched stem cannot
    hide an unmatched body.  Returns ``{"source", "layers", "matched_layers", "matched_share", "mismatches"}``.
    """
    src, path = source_weights(source)
    targets = [layer for layer in flat_layers(backbone) if layer.weights]
    total = sum(int(np.prod(w.shape)) for layer in targets for w in layer.weights)
    matched, mismatches, loaded = [], [], 0
    for layer in targets:
        got = src.get(layer.name)
        want = [tuple(w.shape) for w in layer.weights]
        if got is None:
            mismatches.append(f"{layer.name} (missing)")
        elif [tuple(a.shape) for a in got] != want:
            mismatches.append(f"{layer.name} (shapes {[tuple(a.shape) for a in got]} != {want})")
        else:
            matched.append((layer, got))
            loaded += sum(int(np.prod(s)) for s in want)
    share = loaded / total if total else 0.0
    if share < min_match:
        shown = ", ".join(mismatches[:8]) + (f" and {len(mismatches) - 8} more" if len(mismatches) > 8 else "")
        raise ConfigError(
            f"detect.backbone_weights '{source}': only {share:.0%} of the backbone's weights match by layer name "
            f"and shape (detect.backbone_min_match {min_match:.0%}); not loaded. Unmatched: {shown}. Train the "
            "classifier with model.backbone set to the detector's detect.backbone (docs/detect.md, warm start).")
    for layer, arrays in matched:
        layer.set_weights(arrays)
    log.info("warm start from %s: %d of %d backbone layers, %.1f%% of its weights%s", path, len(matched),
             len(targets), 100 * share, f"; not loaded: {', '.join(mismatches)}" if mismatches else "")
    return {"source": str(path), "layers": len(targets), "matched_layers": len(matched), "matched_share": share,
            "mismatches": mismatches}
