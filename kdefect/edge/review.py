"""The review queue: low-confidence parts go to a folder a human looks at.

Files are hard-linked when possible (free, instant, same inode) and copied
otherwise (another file system); camera frames are saved as PNG.  Copies and
PNGs are written through ``kdefect.utils.io.atomic_path`` so a reviewer never
opens a half-written image.  Names carry time, label and score so the folder
sorts by arrival and the reviewer sees the model's guess.

The queue and the decision log must agree after a crash, so filing is in two
steps around the log record: ``stage_*`` puts the image under a hidden name
(``.NAME.staged``, which reviewers and the watched folder ignore), the record
naming ``NAME`` is written, then ``commit`` renames it into view.  On restart
``recover`` finishes the renames the log vouches for and drops the rest.
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
STAGED = ".staged"


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

    @staticmethod
    def staged_name(dest: Path) -> Path:
        return dest.with_name(f".{dest.name}{STAGED}")

    def stage_file(self, path: str | Path, label: str, score: float) -> tuple[Path, Path]:
        """Hard-link (or copy) an image under its hidden staged name; returns (staged, final) paths."""
        path = Path(path)
        dest = self._name(path.name, label, score, path.suffix.lower())
        staged = self.staged_name(dest)
        if self.mode == "link":
            try:
                os.link(path, staged)
                return staged, dest
            except OSError as exc:
                log.debug("hard link %s -> %s failed (%s); copying", path, staged, exc)
        with atomic_path(staged, suffix=path.suffix.lower()) as tmp:
            shutil.copyfile(path, tmp)
        return staged, dest

    def stage_frame(self, frame: np.ndarray, source: str, label: str, score: float) -> tuple[Path, Path]:
        """Save a camera frame (uint8 HxWxC) as PNG under its hidden staged name; returns (staged, final)."""
        dest = self._name(source, label, score, ".png")
        staged = self.staged_name(dest)
        arr = frame[..., 0] if frame.ndim == 3 and frame.shape[-1] == 1 else frame
        with atomic_path(staged, suffix=".png") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
        return staged, dest

    @staticmethod
    def commit(staged: Path, dest: Path) -> Path:
        """Show a staged image under its final name (after its decision record is durable)."""
        os.replace(staged, dest)
        return dest

    def add_file(self, path: str | Path, label: str, score: float) -> Path:
        """Put an image file into the queue at once (no log record to wait for); returns where it went."""
        return self.commit(*self.stage_file(path, label, score))

    def add_frame(self, frame: np.ndarray, source: str, label: str, score: float) -> Path:
        """Save a camera frame as PNG in the queue at once; returns where it went."""
        return self.commit(*self.stage_frame(frame, source, label, score))

    def recover(self, logged: set[str]) -> tuple[int, int]:
        """After a crash: commit staged images whose record is in the log, delete the others; (committed, dropped)."""
        done = dropped = 0
        for staged in self.folder.glob(f".*{STAGED}"):
            dest = staged.with_name(staged.name[1:-len(STAGED)])
            try:
                if str(dest) in logged:
                    os.replace(staged, dest)
                    done += 1
                else:
                    staged.unlink()
                    dropped += 1
            except OSError as exc:
                log.error("could not recover the staged review image %s: %s", staged, exc)
        if done or dropped:
            log.warning("review folder %s: %d image(s) filed that a crash had left staged, %d without a log record "
                        "removed", self.folder, done, dropped)
        return done, dropped
