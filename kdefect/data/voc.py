"""Pascal VOC annotation parsing with strict, file-naming validation.

Why strict: a box outside its image or an unknown class silently corrupts a
detector's training, so every problem raises a DataError naming the XML file.
Parsing uses defusedxml (annotation files are untrusted input).  TF-free.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as safe_parse

from kdefect.errors import DataError

from .images import is_image_name, list_files

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")
LABEL_RULES = ("largest_area", "most_boxes", "first", "filename")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it is an error (then clipped)


@dataclass
class VocRecord:
    """One annotated image: boxes are float32 (N, 4) ``[xmin, ymin, xmax, ymax]`` in pixels."""

    xml_path: Path
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)


ANNOTATION_DIRS = ("annotations", "Annotations")
IMAGE_DIRS = ("images", "JPEGImages")


def voc_annotation_dir(root: Path) -> Path | None:
    """The folder of a VOC data set's XML files: ``annotations/`` (kdefect, NEU-DET) or ``Annotations/`` (Pascal
    VOC, PKU-PCB) when it holds XML (COCO keeps its JSON in ``annotations/``), else None."""
    return next((root / d for d in ANNOTATION_DIRS if (root / d).is_dir()
                 and next((root / d).rglob("*.xml"), None) is not None), None)


class ImageLookup:
    """Every image file below a data set's root, by file name and by stem, listed once (lazily).

    Why: public VOC sets put images in images/, JPEGImages/, beside the XML, or in per-class folders
    (GC10-DET, PKU-PCB); a name that is unique under the root is found wherever it lies.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by: dict[str, list[Path]] | None = None

    def _index(self) -> dict[str, list[Path]]:
        if self._by is None:
            by: dict[str, list[Path]] = defaultdict(list)
            for p in list_files(self.root):
                if is_image_name(p):
                    by[p.name].append(p)
                    by["stem:" + p.stem].append(p)
            self._by = by
        return self._by

    def find(self, names: list[str], stems: list[str], where: str) -> Path | None:
        by = self._index()
        for key in [*names, *("stem:" + s for s in stems)]:
            hits = by.get(key, [])
            if len(hits) > 1:
                raise DataError(f"{where}: its image '{key.removeprefix('stem:')}' matches {len(hits)} files below "
                                f"'{self.root}' ({', '.join(str(h) for h in hits[:3])}); give each image a unique "
                                "name, or put it in images/ beside annotations/.")
            if hits:
                return hits[0]
        return None


def find_image(xml_path: Path, filename: str | None, lookup: ImageLookup | None = None,
               where: str = "") -> Path | None:
    """Resolve ``<filename>`` in the sibling ``images/`` (or ``JPEGImages/``) folder, tolerating a missing extension.

    NEU-DET writes some file names without ``.jpg``; other tools put the image
    beside the XML.  We try, in order: images/<filename>, <xml dir>/<filename>,
    then <stem>.<any image ext> in both places, using the XML's own stem last; then (with ``lookup``) the one
    image of that name, or stem, anywhere below the data set's root.
    """
    dirs = [xml_path.parent.parent / d for d in IMAGE_DIRS] + [xml_path.parent]
    names = [Path(filename).name] if filename else []
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    stems = [Path(n).stem if Path(n).suffix.lower() in IMAGE_EXTS else n for n in names] + [xml_path.stem]
    for d in dirs:
        for s in stems:
            for ext in IMAGE_EXTS:
                for e in (ext, ext.upper()):
                    if (d / f"{s}{e}").is_file():
                        return d / f"{s}{e}"
    return lookup.find(names, stems, where) if lookup is not None else None


def _num(node, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):  # "nan" and "inf" parse as floats, but no box or size is NaN or infinite
        raise DataError(f"{where}: <{tag}> is missing or not a number ({text!r}; it must be finite). Fix or "
                        "remove this annotation.")
    return value


def _image_size(root, image_path: Path, where: str) -> tuple[int, int]:
    """The image's real (width, height) from its header; ``<size>`` is only cross-checked (the real size wins).

    Why: a ``<size>`` of 1000x1000 on a 64x64 image would otherwise let boxes far outside the pixels through.
    """
    w, h = image_size(image_path, where)
    size = root.find("size")
    if size is not None and size.findtext("width") and size.findtext("height"):
        sw, sh = _num(size, "width", where), _num(size, "height", where)
        if (sw, sh) != (0, 0) and (sw, sh) != (w, h):
            log.warning("%s: <size> says %gx%g but the image is %dx%d; using the image's size", where, sw, sh, w, h)
    return w, h


def parse_voc(xml_path: str | Path, class_names: list[str] | None = None,
              lookup: ImageLookup | None = None) -> VocRecord:
    """Parse and validate one VOC XML; raises DataError naming the file on any problem.

    ``lookup``: find the image anywhere below the data set's root when it is not beside the XML."""
    xml_path = Path(xml_path)
    where = f"VOC annotation '{xml_path}'"
    try:
        root = safe_parse(str(xml_path)).getroot()
    except (ParseError, DefusedXmlException) as exc:
        raise DataError(f"{where} is not valid XML ({exc}). Fix or delete the file.") from exc
    except OSError as exc:
        raise DataError(f"{where} cannot be read ({exc}).") from exc
    if root.tag != "annotation":
        raise DataError(f"{where}: root element is <{root.tag}>, expected <annotation>.")
    image_path = find_image(xml_path, (root.findtext("filename") or "").strip() or None, lookup, where)
    if image_path is None:
        raise DataError(
            f"{where}: its image '{root.findtext('filename')}' was not found in "
            f"'{xml_path.parent.parent / 'images'}'. Add the image or delete the annotation."
        )
    w, h = _image_size(root, image_path, where)
    boxes, labels = [], []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{where}: object {i} has no <name>.")
        if class_names is not None and name not in class_names:
            raise DataError(f"{where}: object {i} has unknown class '{name}'; known: {', '.join(class_names)}.")
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{where}: object {i} ('{name}') has no <bndbox>.")
        boxes.append([_num(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(name)
    return VocRecord(xml_path, image_path, w, h, checked_boxes(boxes, labels, w, h, where), labels)


def checked_boxes(boxes: list, labels: list[str], w: int, h: int, where: str) -> np.ndarray:
    """Pixel ``[xmin, ymin, xmax, ymax]`` boxes as float32 (N, 4), clipped to the image; DataError naming
    ``where`` for an empty box or one outside the image by more than ``BOX_TOLERANCE`` (every box source)."""
    out = []
    for i, ((x0, y0, x1, y1), name) in enumerate(zip(boxes, labels)):
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise DataError(f"{where}: object {i} ('{name}') has a NaN or infinite coordinate. Fix the box.")
        if x1 <= x0 or y1 <= y0:
            raise DataError(
                f"{where}: object {i} ('{name}') has an empty or negative box "
                f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}] (xmax must exceed xmin, ymax must exceed ymin)."
            )
        tol = BOX_TOLERANCE
        if x0 < -tol or y0 < -tol or x1 > w + tol or y1 > h + tol:
            raise DataError(
                f"{where}: object {i} ('{name}') box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the "
                f"{w}x{h} image. Fix the box coordinates."
            )
        out.append([max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))])
    return np.asarray(out, np.float32).reshape(-1, 4)


def image_size(image_path: Path, where: str) -> tuple[int, int]:
    """(width, height) from the image's header; DataError naming ``where`` when it cannot be read."""
    from PIL import Image  # lazy: Pillow loads only when images are read

    try:
        with Image.open(image_path) as im:  # reads the header only
            return im.size
    except Exception as exc:  # Pillow raises many types on hostile files; each is a bad file, not a crash
        raise DataError(f"{where}: its image '{image_path}' cannot be read ({type(exc).__name__}: {exc}).") from None


def image_label(record: VocRecord, rule: str = "largest_area", classes: list[str] | None = None,
                good_label: str | None = "good") -> str:
    """One class per image for classification.

    ``largest_area`` (default): the class whose boxes cover the most total area
    (ties: the class seen first) - the defect that dominates the image.
    ``most_boxes``: the class with the most boxes.  ``first``: the first object.
    ``filename``: the class the image's file name starts with (NEU's ``scratches_12.jpg``:
    the dataset's own labelling, 300 per class), longest match wins.
    An image without objects is ``good_label`` when that is a class (or no class
    list is given); otherwise DataError.
    """
    if rule not in LABEL_RULES:
        raise DataError(f"label rule '{rule}' is unknown; use one of {', '.join(LABEL_RULES)}.")
    if not record.labels:
        if good_label and (classes is None or good_label in classes):
            return good_label
        raise DataError(
            f"VOC annotation '{record.xml_path}' has no objects and there is no '{good_label}' class to give it. "
            "Add objects, remove the file, or set data.good_label."
        )
    if rule == "filename":
        stem = Path(record.image_path).stem
        names = sorted(set(classes or record.labels), key=len, reverse=True)
        match = next((c for c in names if stem.startswith(c)), None)
        if match is None:
            raise DataError(f"'{record.image_path}': file name does not start with a class name "
                            f"({', '.join(sorted(names))}); use data.label_rule=largest_area.")
        return match
    if rule == "first":
        return record.labels[0]
    score: dict[str, float] = defaultdict(float)
    areas = (record.boxes[:, 2] - record.boxes[:, 0]) * (record.boxes[:, 3] - record.boxes[:, 1])
    for name, area in zip(record.labels, areas):
        score[name] += float(area) if rule == "largest_area" else 1.0
    return max(score, key=score.__getitem__)  # dict keeps first-seen order, so ties go to the first class


def voc_xml(filename: str, width: int, height: int, boxes: np.ndarray, labels: list[str]) -> str:
    """A minimal Pascal VOC annotation (pixel xyxy boxes), as written for synthetic / TFDS data."""
    objs = "".join(
        f"<object><name>{escape(n)}</name><bndbox><xmin>{b[0]:g}</xmin><ymin>{b[1]:g}</ymin>"
        f"<xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>"
        for b, n in zip(np.asarray(boxes).reshape(-1, 4), labels)
    )
    return (
        f"<annotation><filename>{escape(filename)}</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>\n"
    )
