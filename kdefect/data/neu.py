"""Where the NEU-DET steel defect dataset lives (it is never downloaded or bundled).

NEU-DET layout: ``images/<class>_<n>.jpg`` (200x200, grey content in 3-channel
JPEG) + ``annotations/<class>_<n>.xml`` (Pascal VOC; ``<folder>`` tags are junk
and some ``<filename>`` tags lack ``.jpg``, which kdefect.data.voc tolerates).
TF-free.
"""

from __future__ import annotations

import os
from pathlib import Path

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def neu_dir() -> Path | None:
    """$KDEFECT_NEU_DIR, else <repo root>/../shared/datasets/neu-det; None when it is absent."""
    env = os.environ.get("KDEFECT_NEU_DIR")
    repo = Path(__file__).resolve().parents[2]
    cand = Path(env).expanduser() if env else repo.parent / "shared" / "datasets" / "neu-det"
    if (cand / "images").is_dir() and (cand / "annotations").is_dir():
        return cand.resolve()
    return None


def neu_class_of(path: str | Path) -> str:
    """The file-name class of a NEU image or annotation (``rolled-in_scale_12.jpg`` -> ``rolled-in_scale``)."""
    return Path(path).stem.rsplit("_", 1)[0]
