"""The review queue: low-confidence parts go to a folder a human looks at.

Files are hard-linked when possible (free, instant, same inode) and copied
otherwise (another file system); camera frames are saved as PNG.  Copies and
PNGs are written through ``kdefect.utils.io.atomic_path`` so a reviewer never
opens a half-written image.  Names carry time, label and score so the folder
sorts by arrival and the reviewer sees the model's guess.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from kdefect.errors import EdgeError
from kdefect.utils.io import atomic_path

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReviewQueue:
    """``mode``: ``"link"`` (hard link, copy when linking fails) or ``"copy"``."""

    def __init__(self, folder: str | Path, mode: str = "link") -> None:
        if mode not in ("link", "copy"):
            raise EdgeError(f"review mode must be 'link' or 'copy', not {mode!r}.")
        self.folder = Path(folder)
        self.mode = mode
        self._n = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create the review folder '{self.folder}' ({exc}); pick another --review-dir.") from exc

    def _name(self, source: str, label: str, score: float, suffix: str) -> Path:
        self._n += 1
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        stem = _SAFE.sub("_", Path(source).stem)[-80:] or "frame"
        return self.folder / f"{stamp}_{self._n:06d}_{_SAFE.sub('_', label)}_{score:.3f}_{stem}{suffix}"

    def add_file(self, path: str | Path, label: str, score: float) -> Path:
        """Put an image file into the queue; returns where it went."""
        path = Path(path)
        dest = self._name(path.name, label, score, path.suffix.lower())
        if self.mode == "link":
            try:
                os.link(path, dest)
                return dest
            except OSError as exc:
                log.debug("hard link %s -> %s failed (%s); copying", path, dest, exc)
        with atomic_path(dest) as tmp:
            shutil.copyfile(path, tmp)
        return dest

    def add_frame(self, frame: np.ndarray, source: str, label: str, score: float) -> Path:
        """Save a camera frame (uint8 HxWxC) as PNG in the queue."""
        dest = self._name(source, label, score, ".png")
        arr = frame[..., 0] if frame.ndim == 3 and frame.shape[-1] == 1 else frame
        with atomic_path(dest) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
        return dest
