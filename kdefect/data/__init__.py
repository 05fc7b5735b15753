"""kdefect data layer: sources -> checked file index -> stratified split -> tf.data.

Importing ``kdefect.data`` (or its TF-free modules: synthetic, voc, images,
sources, split, neu) does not import TensorFlow; the tf.data parts load on first
use.  ``load_dataset`` is the friendly one-call API.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "render_sample": "synthetic", "materialize_synthetic": "synthetic", "cache_root": "synthetic",
    "VocRecord": "voc", "parse_voc": "voc", "image_label": "voc", "voc_xml": "voc",
    "check_image": "images", "check_images": "images",
    "DatasetIndex": "sources", "index_dataset": "sources", "register_source": "sources",
    "subsample_indices": "sources", "SOURCES": "sources",
    "stratified_split": "split", "kfold_splits": "split", "save_split": "split", "load_split": "split",
    "write_skipped": "split",
    "make_dataset": "pipeline", "load_images": "pipeline",
    "augment_image": "augment",
    "neu_dir": "neu", "NEU_CLASSES": "neu",
    "load_dataset": "api",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'kdefect.data' has no attribute {name!r}")
