"""Finding image files and checking that each one really decodes.

Why check up front: a corrupt or truncated file otherwise kills training hours
in (or, worse, is silently decoded as garbage).  Each file is ``verify()``-ed
and then fully loaded with Pillow (the load catches truncation), in a small
thread pool because Pillow releases the GIL while decoding.  Images above the
device's pixel cap (``kdefect.edge.preprocess.MAX_PIXELS``, 50 MP) are refused
from their header, before decoding: training and the device accept the same
files.  TF-free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kdefect.core.files import in_clutter, is_clutter
from kdefect.errors import DataError

log = logging.getLogger(__name__)

# .jfif / .jpe: JPEG under the names Windows and some cameras save it with (decoded by content, like every file)
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".tif", ".tiff"})
TIFF_EXTS = frozenset({".tif", ".tiff"})
# Pillow format names tf.io.decode_image can read directly; TIFF goes through Pillow (see pipeline.py).
TF_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF", "MPO"})


def list_files(folder: Path) -> list[Path]:
    """Every file below ``folder`` (recursive, sorted), less hidden and system files and folders
    (``kdefect.core.files``: Thumbs.db, __MACOSX/, ...)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not in_clutter(p, folder))


def loose_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (not below it), clutter left out (a Mac's ``._x.jpg`` is no image)."""
    return [p for p in folder.iterdir() if p.is_file() and is_image_name(p) and not is_clutter(p.name)]


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def check_image(path: str | Path) -> str | None:
    """None when the file decodes completely, else a short human reason."""
    from PIL import Image, UnidentifiedImageError  # lazy: Pillow loads only when images are read

    path = Path(path)
    if not is_image_name(path):
        return f"not an image file (extension '{path.suffix or '(none)'}'; use jpg, png, bmp or tif)"
    from kdefect.edge.preprocess import MAX_PIXELS  # one pixel cap for training and the device

    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            fmt = im.format
            if im.width * im.height > MAX_PIXELS:  # checked on the header, before anything is decoded
                return f"image is {im.width}x{im.height}, more than the {MAX_PIXELS} pixels allowed (the device limit)"
            im.verify()
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "image has no pixels"
    except UnidentifiedImageError:
        return "not a readable image (unknown or corrupt content)"
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises these for corrupt / truncated data
        return f"corrupt or truncated image ({exc})"
    except Exception as exc:  # decoders can raise anything on hostile input; never crash the scan
        return f"cannot decode image ({type(exc).__name__}: {exc})"
    if fmt not in TF_FORMATS and not (fmt == "TIFF" and path.suffix.lower() in TIFF_EXTS):
        return f"content is {fmt}, which does not match its '{path.suffix}' name; convert it to PNG"
    return None


def check_images(paths: Iterable[str | Path], workers: int | None = None) -> list[str | None]:
    """check_image over many files in parallel (order kept)."""
    paths = list(paths)
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    if len(paths) < 64:
        return [check_image(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(check_image, paths, chunksize=32))


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted, hidden skipped) in folders."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [f for f in list_files(p) if is_image_name(f)]
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"'{p}' does not exist: pass image files or folders of images.")
    if not files:
        raise DataError(f"no images (jpg, png, bmp, tif) found in {', '.join(map(str, inputs))}.")
    return files
