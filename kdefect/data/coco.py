"""``data.source: coco:PATH``: boxes in COCO JSON (``images``, ``annotations``, ``categories``).

``PATH`` is the JSON file, or a folder that holds exactly one COCO JSON (directly, or in ``annotations/``), or a
folder split into ``train/``, ``valid/``, ``test/`` each holding one (the Roboflow export; the split is kept,
see ``data.split_folders``). ``bbox`` is ``[x, y, width, height]`` in pixels. An image is found at
``file_name`` relative to the JSON's folder, its ``images/`` folder, the ``images/`` beside an
``annotations/`` folder, or, when the name is unique, anywhere below the data set's root. Images listed
without annotations are background images (no objects). Classes are the categories that have boxes, so a
placeholder super-category is left out. Every problem is a DataError naming the file. TF-free.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from kdefect.errors import DataError

from .split import split_subdirs
from .voc import ImageLookup, VocRecord, checked_boxes, image_size


def _is_coco(path: Path) -> bool:
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20).decode("utf-8", "ignore")
    except OSError:
        return False
    return '"images"' in head and ('"annotations"' in head or '"categories"' in head)


def coco_files(root: Path) -> list[tuple[str, Path]]:
    """``[(split or '', json), ...]`` of the COCO data set at ``root`` (a JSON file or a folder); [] if none."""
    if root.is_file():
        return [("", root)]  # named by the user: read it, and say what is wrong with it
    if not root.is_dir():
        return []

    def one(folder: Path) -> Path | None:
        found = [p for d in (folder, folder / "annotations") if d.is_dir() for p in sorted(d.glob("*.json"))
                 if _is_coco(p)]
        if len(found) > 1:
            raise DataError(f"'{folder}' holds {len(found)} COCO JSON files ({', '.join(p.name for p in found)}); "
                            "pass one as data.source=coco:FILE.json.")
        return found[0] if found else None

    parts = [(split, f) for split, d in split_subdirs(root) if (f := one(d)) is not None]
    if parts:
        return parts
    f = one(root)
    return [("", f)] if f else []


def read_coco_json(path: Path, lookup: ImageLookup) -> tuple[list[VocRecord], list[tuple[str, str]]]:
    """(records, bad images with reasons) of one COCO JSON file."""
    try:
        data = json.loads(path.read_text())
        images, anns, cats = data["images"], data.get("annotations", []), data.get("categories", [])
        names = {int(c["id"]): str(c["name"]).strip() for c in cats}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"COCO file '{path}' cannot be read as COCO JSON ({type(exc).__name__}: {exc}): it needs "
                        "'images', 'annotations' and 'categories'.") from None
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    dirs = [path.parent, path.parent / "images", path.parent.parent / "images"]
    records, bad = [], []
    for im in images:
        name = str(im.get("file_name", ""))
        where = f"COCO file '{path}', image {im.get('id')} ('{name}')"
        try:
            img = next((d / name for d in dirs if name and (d / name).is_file()), None)
            img = img or lookup.find([Path(name).name], [Path(name).stem], where)
            if img is None:
                raise DataError(f"{where}: the image was not found beside the JSON, in images/, or below "
                                f"'{lookup.root}'.")
            w, h = image_size(img, where)
            boxes, labels = [], []
            for a in by_image.get(im.get("id"), []):
                cat = names.get(a.get("category_id"))
                if cat is None:
                    raise DataError(f"{where}: annotation {a.get('id')} has category_id {a.get('category_id')}, "
                                    "which is not in 'categories'.")
                bb = a.get("bbox")
                if not isinstance(bb, list) or len(bb) != 4:
                    raise DataError(f"{where}: annotation {a.get('id')} has no 'bbox' [x, y, width, height].")
                x, y, bw, bh = (float(v) if isinstance(v, int | float) else math.nan for v in bb)
                boxes.append([x, y, x + bw, y + bh])
                labels.append(cat)
            records.append(VocRecord(path, img, w, h, checked_boxes(boxes, labels, w, h, where), labels))
        except DataError as exc:
            bad.append((name or str(path), str(exc)))
    return records, bad


def read_coco(root: Path) -> tuple[list[VocRecord], list[tuple[str, str]], list[str]]:
    """(records, bad images with reasons, each record's split or '') of the COCO data set at ``root``."""
    files = coco_files(root)
    if not files:
        raise DataError(f"no COCO JSON found at '{root}': pass the file (data.source=coco:FILE.json) or a folder "
                        "holding one (or annotations/FILE.json, or train/ valid/ test/ each holding one).")
    base = root if root.is_dir() else root.parent
    lookup = ImageLookup(base)
    records, bad, splits = [], [], []
    for split, f in files:
        recs, b = read_coco_json(f, lookup)
        records += recs
        bad += b
        splits += [split] * len(recs)
    return records, bad, splits
