"""Where images come from: files, a folder, a watched folder, a camera.

Each source is an iterator of ``Item`` that stops when the ``stop`` event is
set (SIGTERM / Ctrl-C).  The watched folder polls (portable: no inotify on
network shares or in containers) and yields a file only once its size and
mtime have stayed the same for ``settle_s``, so a file still being copied is
never read half-written.  Hidden files (``.name``, the usual temp names of
rsync/scp) are ignored; anything else that is not an image becomes an error
record downstream, never a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdefect.core.files import in_clutter
from kdefect.errors import EdgeError

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One input: a file (``path``) or a camera frame (``frame``, RGB uint8)."""

    source: str
    path: Path | None = None
    frame: np.ndarray | None = None


def _visible(p: Path, root: Path) -> bool:
    return p.is_file() and not in_clutter(p, root)


def iter_files(paths: Iterable[str | Path], stop: threading.Event, recursive: bool = False) -> Iterator[Item]:
    """Files as given; folders expand to their files in sorted order."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir()) if _visible(f, p))
        else:
            files = [p]  # a missing file becomes an error record, not a crash
        for f in files:
            if stop.is_set():
                return
            yield Item(source=str(f), path=f)


def watch_folder(folder: str | Path, stop: threading.Event, poll_s: float = 0.5, settle_s: float = 0.5,
                 existing: bool = True, recursive: bool = False) -> Iterator[Item]:
    """Yield files as they arrive in ``folder`` until ``stop`` is set.

    ``existing``: also classify the files already there at start (a backlog).
    A file is yielded once, when its (size, mtime) has not changed for ``settle_s``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeError(f"watched folder '{folder}' does not exist; create it or fix --watch.")
    done: set[Path] = set()
    pending: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, first seen with that state)

    def listing() -> list[Path]:
        try:
            return sorted(f for f in (folder.rglob("*") if recursive else folder.iterdir()) if _visible(f, folder))
        except OSError as exc:  # folder unmounted for a moment: try again next poll
            log.warning("cannot list watched folder %s (%s); retrying", folder, exc)
            return []

    if not existing:
        done.update(listing())
    while not stop.is_set():
        now = time.monotonic()
        current = listing()
        done.intersection_update(current)  # a deleted-then-recreated name is a new part
        for f in current:
            if f in done:
                continue
            try:
                st = f.stat()
            except OSError:
                continue
            state = (st.st_size, st.st_mtime_ns)
            seen = pending.get(f)
            if seen is None or seen[:2] != state:
                pending[f] = (*state, now)
                if settle_s > 0:
                    continue
            elif now - seen[2] < settle_s:
                continue
            pending.pop(f, None)
            done.add(f)
            yield Item(source=str(f), path=f)
            if stop.is_set():
                return
        for gone in set(pending) - set(current):
            pending.pop(gone)
        stop.wait(poll_s)


def camera(index: int | str, stop: threading.Event, max_failures: int = 50) -> Iterator[Item]:
    """Frames from an OpenCV camera (``pip install opencv-python-headless``), as RGB uint8."""
    try:
        import cv2  # lazy: OpenCV loads only for a camera source
    except ImportError as exc:
        raise EdgeError("the camera source needs OpenCV: `pip install opencv-python-headless`.") from exc
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise EdgeError(f"camera {index!r} could not be opened; check the device index / URL and permissions.")
    n = failures = 0
    try:
        while not stop.is_set():
            ok, frame = cap.read()
            if not ok or frame is None:
                failures += 1
                if failures >= max_failures:
                    raise EdgeError(f"camera {index!r} returned no frame {max_failures} times in a row; stopping.")
                stop.wait(0.05)
                continue
            failures = 0
            n += 1
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
            yield Item(source=f"camera:{index}#{n}", frame=np.ascontiguousarray(rgb))
    finally:
        cap.release()
