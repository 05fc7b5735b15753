"""``data.source: yolo:DIR``: boxes in the YOLO text format (Ultralytics, Roboflow and Darknet exports).

Each image has a ``.txt`` of lines ``class cx cy w h``, normalised to 0..1 (a segmentation polygon
``class x1 y1 x2 y2 ...`` becomes its bounding box, as Ultralytics does). The label file mirrors the image's path
with its last ``images`` folder replaced by ``labels``, or lies beside the image. An image without a label file
is a background image (no objects), as in Ultralytics. Class names come from ``data.yaml`` (``names``: a list or
an ``{id: name}`` map), ``classes.txt`` or ``obj.names``. Layouts:

- ``DIR/images/**`` + ``DIR/labels/**``;
- ``DIR/images/{train,val,test}/`` + ``DIR/labels/{train,val,test}/`` (Ultralytics);
- ``DIR/{train,valid,test}/images/`` + ``.../labels/`` (Roboflow);

and in the last two the split folders keep their split (``data.split_folders``). Every problem is a DataError
naming the file and line. TF-free.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from kdefect.errors import DataError

from .images import is_image_name, list_files
from .split import SPLIT_FOLDERS
from .voc import VocRecord, checked_boxes, image_size

log = logging.getLogger(__name__)

NAME_FILES = ("data.yaml", "dataset.yaml", "classes.txt", "obj.names")
COORD_TOLERANCE = 0.01  # normalised coordinates may stray this far outside 0..1 (rounding in exporters)


def is_yolo(root: Path) -> bool:
    """True when ``root`` looks like a YOLO data set: a class-name file and a ``labels`` folder."""
    if not any((root / f).is_file() for f in NAME_FILES):
        return False
    return (root / "labels").is_dir() or any((d / "labels").is_dir() for d in root.iterdir() if d.is_dir())


def class_names(root: Path) -> list[str]:
    """The class names, in class-id order, from ``data.yaml`` / ``dataset.yaml`` / ``classes.txt`` / ``obj.names``."""
    for f in NAME_FILES:
        path = root / f
        if not path.is_file():
            continue
        if path.suffix == ".yaml":
            import yaml

            try:
                names = (yaml.safe_load(path.read_text()) or {}).get("names")
            except (yaml.YAMLError, AttributeError) as exc:
                raise DataError(f"'{path}' is not a YAML mapping with 'names' ({exc}).") from None
            if isinstance(names, dict):
                try:
                    ids = sorted(int(k) for k in names)
                except ValueError:
                    raise DataError(f"'{path}': 'names' keys must be class ids 0, 1, ...") from None
                if ids != list(range(len(ids))):
                    raise DataError(f"'{path}': 'names' ids must run 0..{len(ids) - 1} without gaps, got {ids}.")
                names = [names[k] if k in names else names[str(k)] for k in ids]
            if not isinstance(names, list) or not names:
                raise DataError(f"'{path}' has no 'names' list; add e.g. names: [crack, scratch].")
        else:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        names = [str(n).strip() for n in names]
        if len(set(names)) != len(names) or not all(names):
            raise DataError(f"'{path}': class names must be unique and non-empty, got {names}.")
        return names
    raise DataError(f"no class names for the YOLO data in '{root}': add data.yaml with 'names: [...]', or "
                    "classes.txt with one name per line.")


def _split_of(rel: Path) -> str:
    """The split a file belongs to, from a split-named folder in its path below the root ('' when none)."""
    return next((SPLIT_FOLDERS[p.lower()] for p in rel.parts[:-1] if p.lower() in SPLIT_FOLDERS), "")


def label_path(image: Path) -> Path | None:
    """The image's label file: its path with the last ``images`` folder replaced by ``labels``, or beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            mirrored = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if mirrored.is_file():
                return mirrored
            break
    beside = image.with_suffix(".txt")
    return beside if beside.is_file() else None


def parse_label(path: Path, image: Path, names: list[str]) -> VocRecord:
    """One image's YOLO label file as a VocRecord with pixel boxes; DataError naming the file and line."""
    w, h = image_size(image, f"YOLO label '{path}'")
    boxes, labels = [], []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"YOLO label '{path}' cannot be read ({exc}).") from None
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"YOLO label '{path}' line {n}"
        try:
            cls, coords = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(f"{where}: '{line.strip()}' is not 'class cx cy w h' (an integer and four "
                            "numbers).") from None
        if not 0 <= cls < len(names):
            raise DataError(f"{where}: class id {cls} is not one of the {len(names)} classes (0..{len(names) - 1}) "
                            "named in the data set's names file.")
        if len(coords) < 4 or (len(coords) > 4 and len(coords) % 2):
            raise DataError(f"{where}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 ...', got "
                            f"{len(coords)} numbers.")
        if not all(math.isfinite(v) for v in coords):
            raise DataError(f"{where}: a coordinate is NaN or infinite.")
        if len(coords) == 4:
            cx, cy, bw, bh = coords
            x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        else:  # a segmentation polygon: its bounding box
            xs, ys = coords[0::2], coords[1::2]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        tol = COORD_TOLERANCE
        if min(x0, y0) < -tol or max(x1, y1) > 1 + tol:
            raise DataError(f"{where}: coordinates must be normalised to 0..1 (the box spans x {x0:.3g}..{x1:.3g}, "
                            f"y {y0:.3g}..{y1:.3g}). Pixel coordinates? Divide by the image size.")
        boxes.append([x0 * w, y0 * h, x1 * w, y1 * h])
        labels.append(names[cls])
    return VocRecord(path, image, w, h, checked_boxes(boxes, labels, w, h, f"YOLO label '{path}'"), labels)


def read_yolo(root: Path) -> tuple[list[VocRecord], list[tuple[str, str]], list[str], list[str]]:
    """(records, bad files with reasons, class names, each record's split or '') for a YOLO data set."""
    names = class_names(root)
    images = [p for p in list_files(root) if is_image_name(p)]
    if not images:
        raise DataError(f"no images found below the YOLO data set '{root}'.")
    records, bad, splits = [], [], []
    labelled = 0
    for img in images:
        lab = label_path(img)
        try:
            if lab is None:  # no label file: a background image, as in Ultralytics
                w, h = image_size(img, f"YOLO image '{img}'")
                records.append(VocRecord(img.with_suffix(".txt"), img, w, h))
            else:
                records.append(parse_label(lab, img, names))
                labelled += 1
            splits.append(_split_of(img.relative_to(root)))
        except DataError as exc:
            bad.append((str(lab or img), str(exc)))
    if labelled < len(records):
        log.warning("%d of %d images below '%s' have no label file: each is a background image (no objects)",
                    len(records) - labelled, len(records), root)
    if not labelled:
        raise DataError(f"none of the {len(images)} images below '{root}' has a label file (labels/.../<name>.txt "
                        "mirroring images/.../<name>.jpg, or <name>.txt beside the image).")
    return records, bad, names, splits
