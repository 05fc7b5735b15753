"""``DatasetIndex``: the files, labels and boxes of one data set, as every source returns them.

Kept apart from ``sources`` (the registry of indexers) so that an indexer module, e.g. ``packed``, can build
one without importing the registry that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DatasetIndex:
    """Files of one dataset.  ``labels`` are class indices.  ``image_labels``: one class per image
    (classification); when False (detection) an image without objects has label -1 (used only to
    stratify the split), ``classes`` are the object classes and ``boxes`` / ``box_labels`` are set.
    ``skipped`` holds (path, reason) for every bad file left out.  The data layer knows no task names:
    the caller passes its task's ``image_labels``."""

    root: Path
    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    boxes: list[np.ndarray] | None = None
    box_labels: list[np.ndarray] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    image_labels: bool = True
    # a folder already split into train/ val/ test/: each file's split ("train" | "val" | "test"), else None
    split_names: list[str] | None = None
    packed: Any = None  # a packed data set (``tfrecord:``): fixed split, profile and shards (kdefect.data.packed)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> DatasetIndex:
        """A new index holding only ``indices`` (same classes, root and skipped list)."""
        idx = np.asarray(indices, int)
        pick = (lambda seq: [seq[i] for i in idx]) if len(idx) else (lambda seq: [])
        return DatasetIndex(self.root, list(self.classes), pick(self.paths), self.labels[idx],
                            pick(self.boxes) if self.boxes is not None else None,
                            pick(self.box_labels) if self.box_labels is not None else None,
                            list(self.skipped), self.image_labels,
                            pick(self.split_names) if self.split_names is not None else None)
