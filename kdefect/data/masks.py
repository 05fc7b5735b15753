"""Segmentation masks that lie among a class folder's images: found and left out of the index.

Why: many public defect sets ship a pixel mask beside each image. Magnetic Tile has ``exp1.jpg`` + ``exp1.png``,
KolektorSDD ``Part0.jpg`` + ``Part0_label.bmp``, KolektorSDD2 ``20000.png`` + ``20000_GT.png``, DAGM a
``Label/`` folder in each class. Read as class folders, every mask became one more image of its class. The
model then learnt masks as well as parts, and the masks, easy to tell apart, inflated every test figure. So a
file is a mask, and left out with a warning, when:

1. it lies in a mask folder (``label(s)``, ``mask(s)``, ``gt``, ``ground_truth``, ``groundtruth``, ``annotations``,
   any case) below a class folder;
2. its stem is another image's stem in the same folder plus a mask suffix (``_label``, ``_mask``, ``_gt``,
   ``_seg``, ``_segmentation``, also with ``-``), any case;
3. it shares its stem with another image in the same folder and has at most two grey levels while the other
   has more (a binary mask beside its photo).

A whole class folder is a mask folder (AITEX ships ``Defect_images/``, ``NODefect_images/`` and ``Mask_images/``)
when its name says so (a mask-folder name, or one containing "mask") and every image sampled from it has at most
two grey levels: ``is_mask_folder``.

TF-free; only the files of rule 3's pairs are decoded.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

from .images import is_image_name

log = logging.getLogger(__name__)

MASK_DIRS = frozenset({"label", "labels", "mask", "masks", "gt", "ground_truth", "groundtruth", "annotations"})
_SUFFIX = re.compile(r"^(?P<base>.+?)[_-](label|mask|gt|seg|segmentation)$", re.IGNORECASE)


def _grey_levels(path: Path, cap: int = 3) -> int:
    """How many distinct grey levels the image has (counting stops at ``cap``); ``cap`` when it cannot be read."""
    from PIL import Image  # lazy: Pillow loads only when a same-stem pair is found

    try:
        with Image.open(path) as im:
            hist = im.convert("L").histogram()
    except (OSError, ValueError):
        return cap
    return min(cap, sum(1 for h in hist if h))


def is_mask_folder(folder: Path, files: list[Path], sample: int = 8) -> bool:
    """True when a would-be class folder holds masks: a mask-like name and only binary images in a sample."""
    name = folder.name.lower()
    if name not in MASK_DIRS and "mask" not in name:
        return False
    images = [f for f in files if is_image_name(f)]
    picked = images[:: max(1, len(images) // sample)][:sample]
    return bool(picked) and all(_grey_levels(f) <= 2 for f in picked)


def split_masks(files: list[Path], class_dir: Path) -> tuple[list[Path], list[Path]]:
    """(images, masks) among ``files``, the files below one class folder ``class_dir`` (rules in the module doc)."""
    masks: set[Path] = set()
    by_folder: dict[Path, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        if not is_image_name(f):
            continue
        if any(part.lower() in MASK_DIRS for part in f.relative_to(class_dir).parts[:-1]):
            masks.add(f)
        else:
            by_folder[f.parent][f.stem.lower()].append(f)
    for stems in by_folder.values():
        for stem, group in stems.items():
            m = _SUFFIX.match(stem)
            if m and m.group("base") in stems:
                masks.update(group)
            elif len(group) == 2:
                levels = [_grey_levels(f) for f in group]
                if min(levels) <= 2 < max(levels):
                    masks.add(group[levels.index(min(levels))])
    return [f for f in files if f not in masks], sorted(masks)


def drop_masks(files: list[Path], class_dir: Path) -> list[Path]:
    """``files`` without their masks; a warning says how many were left out, with an example."""
    images, masks = split_masks(files, class_dir)
    if masks:
        log.warning("%d segmentation mask(s) in class folder '%s' left out (e.g. %s): masks are not images of the "
                    "class. Move or rename them if they are.", len(masks), class_dir.name, masks[0].relative_to(class_dir))
    return images
