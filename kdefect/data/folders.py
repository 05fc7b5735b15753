"""Class folders as published: ``<class>/``, ``<split>/<class>/``, ``<class>/<split>/``, with masks beside.

Why a module of its own: a folder of class folders is the most common way a line's images arrive, and the ways it
goes wrong silently are many. Split folders read as classes train a "train vs test" model; masks beside the images
become images of their class; a surface-type folder hides the crack / no-crack folders below it. Each is caught
here, before any image is decoded (``kdefect.data.masks`` decodes the few files it must). TF-free.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kdefect.core.files import is_clutter
from kdefect.errors import DataError

from .images import is_image_name, list_files, loose_images
from .masks import MASK_DIRS, drop_masks, is_mask_folder
from .split import SPLIT_FOLDERS, split_subdirs

log = logging.getLogger(__name__)

def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_clutter(d.name))


def _split_layout(root: Path) -> list[tuple[str, Path]] | None:
    """``[(split, class folder), ...]`` when ``root`` holds train/ (val/) test/ folders of class folders, else None.

    Why: a public data set often comes as ``train/<class>/`` and ``test/<class>/``.  Read as class folders, that
    trains a "train vs test" classifier and reports it as a defect model.  A split-named folder that holds images
    directly, and no class folders, is a class of its own (the plain layout) beside real classes; split folders
    alone are an error in ``class_folder_entries``.
    """
    named = split_subdirs(root)
    classes = {d: _subdirs(d) for _, d in named}
    if not named or not all(classes.values()):
        return None
    for d in _subdirs(root):
        if d not in classes:
            log.warning("'%s' is split into %s; its folder '%s' is not a split name (%s) and is left out", root,
                        "/, ".join(x.name for x in classes) + "/", d.name, ", ".join(sorted(SPLIT_FOLDERS)))
    for d in classes:
        if loose := loose_images(d):
            log.warning("%d image(s) lie directly in '%s', outside its class folders, and are left out", len(loose), d)
    return [(split, c) for split, d in named for c in classes[d]]


def class_folder_entries(root: Path) -> tuple[list[str], list[tuple[str, int, str]]]:
    """(classes, [(path, class index, split or ''), ...]) of a class-folder data set."""
    layout = _split_layout(root)
    if layout is None:
        layout = [("", d) for d in _subdirs(root)]
    files = {d: list_files(d) for _, d in layout}
    if masks := sorted({d.name for d, f in files.items() if is_mask_folder(d, f)}):
        log.warning("folder(s) %s in '%s' hold segmentation masks (a mask folder's name, only two grey levels), "
                    "not a class: left out", ", ".join(f"'{m}/'" for m in masks), root)
        layout = [(part, d) for part, d in layout if d.name not in masks]
    inner = _inner_splits(files) if all(not part for part, _ in layout) else None
    if inner is None:
        _warn_nested_classes(files)
    classes = sorted({d.name for _, d in layout})
    if classes and all(c.lower() in SPLIT_FOLDERS for c in classes):  # train/ test/ holding images, no classes
        raise DataError(f"'{root}' holds only split folders ({', '.join(c + '/' for c in classes)}) with images "
                        "directly in them: read as classes, kdefect would learn train against test. Put class "
                        "folders inside each split folder, name the images <class>_<number> (Cr_12.bmp: read "
                        f"as names:{root}), or list them in a label table (csv:FILE).")
    if not classes:
        loose = loose_images(root)
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise DataError(f"data folder '{root}' has no class subfolders{hint}. Put each class's images in its own "
                        "subfolder, e.g. good/ and scratch/; or name them <class>_<number> (Cr_12.bmp) and use "
                        f"data.source=names:{root}; or list them in a label table (csv:FILE).")
    entries = [(str(p), classes.index(d.name), part) for part, d in layout for p in drop_masks(files[d], d)]
    if inner is not None:  # <class>/<split>/: each file's split from its folder
        entries = [(p, c, inner[p]) for p, c, _ in entries]
    return classes, entries


def _inner_splits(files: dict[Path, list[Path]]) -> dict[str, str] | None:
    """{image path: split} when every class folder holds only split-named folders of images (``<class>/train/``,
    ``<class>/test/``: DAGM and some Kaggle sets split inside each class), else None."""
    out: dict[str, str] = {}
    for d, fs in files.items():
        for f in fs:
            parts = f.relative_to(d).parts
            if not is_image_name(f) or (len(parts) > 1 and parts[0].lower() in MASK_DIRS):
                continue
            if len(parts) < 2 or parts[0].lower() not in SPLIT_FOLDERS:
                return None
            out[str(f)] = SPLIT_FOLDERS[parts[0].lower()]
    if not out:
        return None
    log.info("each class folder is split inside (<class>/%s/): the split is kept as given",
             "/, <class>/".join(sorted({s for s in out.values()})))
    return out


def _warn_nested_classes(files: dict[Path, list[Path]]) -> None:
    """Warn when a class folder holds no images itself, only two or more image folders: those may be the classes.

    Why: SDNET2018 keeps ``D/CD`` (cracked) and ``D/UD`` (uncracked) under a surface type ``D``. Read at the top,
    the model learns surface types while the user believes it finds cracks.
    """
    for d, fs in files.items():
        subs = {f.relative_to(d).parts[0] for f in fs if is_image_name(f) and len(f.relative_to(d).parts) > 1}
        subs -= {s for s in subs if s.lower() in MASK_DIRS}
        if subs and all(x.lower() in SPLIT_FOLDERS for x in subs):
            log.warning("class folder '%s' is split inside (%s) but not every class folder is: the split is not "
                        "kept; data.split splits all images", d.name, ", ".join(f"{x}/" for x in sorted(subs)))
        elif len(subs) >= 2 and not any(f.parent == d and is_image_name(f) for f in fs):
            log.warning("class folder '%s' holds no images itself, only the folders %s: all are read as class '%s'. "
                        "If those folders are the classes, point data.source at '%s', or list the images in a "
                        "label table (csv:FILE)", d.name, ", ".join(f"{s}/" for s in sorted(subs)), d.name, d)
