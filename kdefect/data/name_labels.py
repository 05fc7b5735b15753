"""``names:DIR``: one folder of images whose file names carry the class, as ``<class><sep><number>``.

Why: some of the most used defect sets ship flat. NEU-CLS has ``Cr_1.bmp`` ... ``Sc_300.bmp`` in one folder,
others ``crazing_12.jpg`` or ``scratch (3).png``. Without this, kdefect asked the user to sort 1,800 files
into class folders by hand. The class is the stem with its trailing number (and the ``_``, ``-``, ``.``, space
or brackets around it) removed; ``rolled-in_scale_3`` is class ``rolled-in_scale``. A file whose name has no
trailing number is a bad entry (``data.on_bad_image`` decides). Images may also lie in split folders
(``train/Cr_1.bmp``, ``test/Cr_241.bmp``): their split is kept like that of split class folders. A plain folder
path is read this way when it holds images, or split folders of images, and no class folders, and its names
give at least two classes of two images or more (``looks_named``). TF-free.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from kdefect.core.files import is_clutter

from .images import is_image_name, list_files, loose_images
from .split import SPLIT_FOLDERS

log = logging.getLogger(__name__)

_NAMED = re.compile(r"^(?P<cls>.*?[^\W\d_].*?)[\s_.\-]*\(?\d+\)?$")


def class_of(name: str) -> str | None:
    """The class in a file name (``Cr_12.bmp`` -> ``Cr``), or None when it does not end in a number."""
    m = _NAMED.match(Path(name).stem)
    return m.group("cls") if m else None


def _split_of(f: Path, root: Path) -> str | None:
    """'' for an image directly in ``root``, the split of one directly in a split folder, else None."""
    parts = f.relative_to(root).parts
    if len(parts) == 1:
        return ""
    return SPLIT_FOLDERS.get(parts[0].lower()) if len(parts) == 2 else None


def named_images(root: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """([(path, class, split or ''), ...], [(path, reason), ...]) for the images in ``root`` and its split folders."""
    rows, bad = [], []
    for f in list_files(root):
        if not is_image_name(f) or (split := _split_of(f, root)) is None:
            continue
        cls = class_of(f.name)
        if cls is None:
            bad.append((str(f), "its name does not end in a number after the class (expected e.g. Cr_12.bmp)"))
        else:
            rows.append((str(f), cls, split))
    if any(r[2] for r in rows) and (loose := [r for r in rows if not r[2]]):  # beside split folders: no split
        log.warning("%d image(s) lie directly in '%s', beside its split folders, and are left out", len(loose), root)
        rows = [r for r in rows if r[2]]
    return rows, bad


def looks_named(root: Path) -> bool:
    """True for a folder of loose images (or of split folders of them) only, whose names give >= 2 classes with
    >= 2 images each."""
    dirs = [d for d in root.iterdir() if d.is_dir() and not is_clutter(d.name)]
    if any(d.name.lower() not in SPLIT_FOLDERS or any(x.is_dir() for x in d.iterdir()) for d in dirs):
        return False
    names = [p.name for d in (root, *dirs) for p in loose_images(d)]
    classes = Counter(class_of(n) for n in names)
    if not names or classes.pop(None, 0) > len(names) // 10:  # most names must follow the pattern
        return False
    return len(classes) >= 2 and min(classes.values()) >= 2
