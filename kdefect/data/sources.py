"""Turn ``data.source`` into a checked list of files, labels and (for detection) boxes.

Every source ends as files on disk (synthetic and TFDS data are materialised as
PNG in the cache), so splitting, the run folder's split lists, evaluation and
export all work on plain paths.  Each source is a registered function; the
bad-input policy (``data.on_bad_image``) is applied once, here.  TF-free.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdefect.core.registry import Registry, loose_name
from kdefect.errors import ConfigError, DataError

from .folders import class_folder_entries
from .images import IMAGE_EXTS, check_images, is_image_name, list_files
from .index import DatasetIndex  # re-exported: the index every source returns
from .split import split_subdirs
from .voc import ImageLookup, image_label, parse_voc, voc_annotation_dir

log = logging.getLogger(__name__)

SourceFn = Callable[[str, object, bool], "DatasetIndex"]
SOURCES = Registry("data source")  # name -> indexer


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: ``@register_source('folder')`` on ``fn(location, data_cfg, image_labels) -> DatasetIndex``."""
    return SOURCES.register(name)


def _apply_policy(bad: list[tuple[str, str]], data_cfg, root: Path) -> list[tuple[str, str]]:
    if bad and data_cfg.on_bad_image != "skip":
        lines = "\n".join(f"  {p}: {r}" for p, r in bad)
        raise DataError(
            f"{len(bad)} bad input file(s) in '{root}':\n{lines}\n"
            "Fix or remove them, or rerun with --on-bad-image skip (data.on_bad_image=skip) to leave them out; "
            "skipped files are listed in the run folder (skipped.csv)."
        )
    for p, r in bad:
        log.warning("skipping %s: %s", p, r)
    return bad


def _check_classes(classes: list[str], counts: np.ndarray, root: Path, what: str = "class folder") -> None:
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DataError(
            f"{what}(s) {', '.join(repr(c) for c in empty)} in '{root}' have no usable images. "
            "Add images there or remove the class."
        )
    if len(classes) < 2:
        raise DataError(
            f"only one class ({classes[0]!r}) found in '{root}'; a classifier needs at least two "
            "(e.g. a 'good' folder beside the defect folders)."
        )
    alike: dict[str, list[str]] = {}
    for c in classes:  # 'Crack' in train/, 'crack' in test/; 'OK' and 'ok ' in a label table
        alike.setdefault(loose_name(c), []).append(c)
    for group in (g for g in alike.values() if len(g) > 1):
        log.warning("%ss %s in '%s' differ only in case or separators (spaces, '_', '-'): they are trained as different classes. "
                    "Rename them to one name if they are the same.", what, " and ".join(repr(c) for c in group), root)


# What each local source says when its path is missing. ``check_location`` asks before TensorFlow loads (the CLI),
# so a mistyped path is answered in a second; each indexer asks again through ``require_location``.
MISSING = {
    "folder": ("dir", "data folder '{}' does not exist. Pass a folder with one subfolder per class."),
    "voc": ("dir", "VOC folder '{}' does not exist. It needs images/ and annotations/ subfolders."),
    "yolo": ("dir", "YOLO folder '{}' does not exist."),
    "coco": ("any", "COCO data '{}' does not exist."),
    "csv": ("file", "label table '{}' does not exist."),
    "names": ("dir", "data folder '{}' does not exist."),
}


def _unpack_command(name: str, location: str) -> str | None:
    """How to unpack an archive named ``name`` (lower case), or None when it is no archive."""
    if name.endswith(".zip"):
        return f"python -m zipfile -e '{location}' FOLDER"
    if name.endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")):
        return f"tar -xf '{location}' -C FOLDER"
    return "an archive tool" if name.endswith((".7z", ".rar")) else None


def require_location(kind: str, location: str) -> Path:
    """The resolved path of a ``kind`` source; DataError (``MISSING``'s message) when it is not there."""
    path = Path(location).expanduser().resolve()
    need, message = MISSING[kind]
    if need == "dir" and path.is_file():  # data sets are shipped as archives: say so, not "does not exist"
        if unpack := _unpack_command(path.name.lower(), location):
            raise DataError(f"'{location}' is an archive; kdefect reads folders. Unpack it first ({unpack}), "
                            "then pass the folder.")
        what = message.format(location).split(". ", 1)  # keep the second sentence: what the folder must hold
        raise DataError(f"'{location}' is a file, not a folder." + (f" {what[1]}" if len(what) > 1 else ""))
    if not (path.is_dir() if need == "dir" else path.is_file() if need == "file" else path.exists()):
        raise DataError(message.format(location))
    return path


def check_location(data_cfg) -> None:
    """DataError when ``data.source`` names a local path that is missing (TF-free: the CLI calls it first)."""
    kind, location = resolve_source(data_cfg)
    if kind in MISSING:
        require_location(kind, location)


@register_source("folder")
def index_folder(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """Class-per-folder images: ``<root>/<class>/**/<image>``, or already split:
    ``<root>/{train,val,test}/<class>/**/<image>`` (each file's split kept in ``split_names``).
    Class order is alphabetical."""
    if not image_labels:
        raise DataError(f"'{location}' is a class-per-folder dataset, which has no boxes; detection needs VOC "
                        "folders (images/ + annotations/).")
    root = require_location("folder", location)
    classes, entries = class_folder_entries(root)
    return _index_labelled(root, classes, entries, [], data_cfg, "class folder")


def _index_labelled(root: Path, classes: list[str], entries: list[tuple[str, int, str]], bad: list[tuple[str, str]],
                    data_cfg, what: str) -> DatasetIndex:
    """The shared tail of the one-class-per-image sources (class folders, label tables): check every image, apply
    the bad-input policy and build the index. ``entries``: (path, class index, split name or '')."""
    reasons = check_images([p for p, _, _ in entries])
    bad += [(p, why) for (p, _, _), why in zip(entries, reasons) if why]
    kept = [e for e, why in zip(entries, reasons) if not why]
    if not kept and not bad:
        raise DataError(f"no images found below '{root}'. Supported: "
                        f"{', '.join(sorted(e.lstrip('.') for e in IMAGE_EXTS))}.")
    skipped = _apply_policy(bad, data_cfg, root)
    labels = np.asarray([c for _, c, _ in kept], np.int64)
    _check_classes(classes, np.bincount(labels, minlength=len(classes)), root, what)
    parts = [s for _, _, s in kept]
    return DatasetIndex(root, classes, [p for p, _, _ in kept], labels, skipped=skipped,
                        split_names=parts if any(parts) else None)


def index_voc_root(root: Path, data_cfg, image_labels: bool, classes: list[str] | None = None) -> DatasetIndex:
    """Index a Pascal VOC folder: XML files in ``annotations/`` or ``Annotations/`` (any depth), their images in
    ``images/``, ``JPEGImages/``, beside the XML, or anywhere below ``root`` by file name (see ``voc.find_image``).
    A folder split into ``train/`` ``validation/`` ... VOC folders (NEU-DET as Kaggle ships it) keeps its split.

    ``image_labels``: one label per image by ``data.label_rule`` (images without objects
    are ``data.good_label``); else per-image boxes and box label indices.
    ``classes`` fixes the class order (else: sorted object names).
    """
    ann = voc_annotation_dir(root)
    parts = [(split, d, a) for split, d in split_subdirs(root) if (a := voc_annotation_dir(d)) is not None]
    if ann is not None or not parts:  # voc:DIR with another folder name (GC10-DET's lable/): any XML below
        records, bad = _voc_records(root, ann or root)
        return index_records(root, records, bad, data_cfg, image_labels, classes, "VOC")
    records, bad, splits = [], [], []
    for split, folder, folder_ann in parts:
        recs, b = _voc_records(folder, folder_ann)
        records, bad, splits = records + recs, bad + b, splits + [split] * len(recs)
    return index_records(root, records, bad, data_cfg, image_labels, classes, "VOC", splits)


def _voc_records(root: Path, ann: Path) -> tuple[list, list[tuple[str, str]]]:
    """(records, bad files with reasons) of one VOC folder, its XML files below ``ann``; images that no XML names
    are bad files."""
    xmls = sorted(p for p in list_files(ann) if p.suffix.lower() == ".xml")
    if not xmls:
        raise DataError(f"no VOC annotations found in '{root}'. A VOC dataset needs annotations/*.xml (or "
                        "Annotations/) and its images (images/, JPEGImages/ or beside the XML files).")
    records, bad = [], []
    lookup = ImageLookup(root)
    for x in xmls:
        try:
            records.append(parse_voc(x, lookup=lookup))
        except DataError as exc:
            bad.append((str(x), str(exc)))
    annotated = {r.image_path.resolve() for r in records}
    xml_stems = {x.stem for x in xmls}  # an image whose XML is broken is reported once, via its XML
    for img_dir in (root / "images", root / "JPEGImages"):
        if img_dir.is_dir():
            bad += [(str(p), "image has no annotation XML") for p in list_files(img_dir)
                    if is_image_name(p) and p.resolve() not in annotated and p.stem not in xml_stems]
    return records, bad


def index_records(root: Path, records: list, bad: list[tuple[str, str]], data_cfg, image_labels: bool,
                  classes: list[str] | None = None, kind: str = "VOC",
                  split_names: list[str] | None = None) -> DatasetIndex:
    """The shared tail of every box source (VOC, YOLO, COCO): check the images, apply the bad-input policy,
    fix the class order and build the index (image labels by ``data.label_rule``, or boxes).

    ``records``: ``VocRecord``s; ``split_names`` (one per record): the split folder each came from, if any.
    """
    reasons = check_images([r.image_path for r in records])
    good_recs, parts = [], []
    for i, (r, reason) in enumerate(zip(records, reasons)):
        if reason:
            bad.append((str(r.image_path), reason))
        else:
            good_recs.append(r)
            parts.append(split_names[i] if split_names else "")
    names = sorted({n for r in good_recs for n in r.labels})
    good = data_cfg.good_label
    if classes is None:
        classes = names + ([good] if image_labels and good and good not in names
                           and any(not r.labels for r in good_recs) else [])
    elif unknown := sorted(set(names) - set(classes)):
        raise DataError(f"{kind} data in '{root}' has unknown classes {unknown}; expected {classes}.")
    kept, labels, kept_parts = [], [], []
    for r, part in zip(good_recs, parts):
        try:
            name = image_label(r, data_cfg.label_rule, classes if image_labels else None, good)
            labels.append(classes.index(name) if name in classes else -1)
            kept.append(r)
            kept_parts.append(part)
        except DataError as exc:
            bad.append((str(r.xml_path), str(exc)))
    skipped = _apply_policy(bad, data_cfg, root)
    if not kept:
        raise DataError(f"no usable annotated images in '{root}'.")
    labels_arr = np.asarray(labels, np.int64)
    given = kept_parts if any(kept_parts) else None
    if image_labels:
        _check_classes(classes, np.bincount(labels_arr, minlength=len(classes)), root, "class")
        return DatasetIndex(root, classes, [str(r.image_path) for r in kept], labels_arr, skipped=skipped,
                            split_names=given)
    if not classes:
        raise DataError(f"{kind} data in '{root}' has no objects at all; detection needs annotated boxes.")
    return DatasetIndex(
        root, classes, [str(r.image_path) for r in kept], labels_arr,
        boxes=[r.boxes for r in kept],
        box_labels=[np.asarray([classes.index(n) for n in r.labels], np.int64) for r in kept],
        skipped=skipped, image_labels=False, split_names=given,
    )


@register_source("voc")
def index_voc(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    root = require_location("voc", location)
    return index_voc_root(root, data_cfg, image_labels)


@register_source("yolo")
def index_yolo(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``yolo:DIR``: YOLO text labels (Ultralytics / Roboflow / Darknet layouts; see ``kdefect.data.yolo``)."""
    from .yolo import read_yolo

    root = require_location("yolo", location)
    records, bad, names, splits = read_yolo(root)
    used = {n for r in records for n in r.labels}
    classes = [n for n in names if n in used]  # the names file's order; a class without boxes is left out
    good = data_cfg.good_label
    if image_labels and good and good not in classes and any(not r.labels for r in records):
        classes.append(good)  # background images are the good class
    return index_records(root, records, bad, data_cfg, image_labels, classes, "YOLO", splits)


@register_source("coco")
def index_coco(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``coco:PATH``: COCO JSON boxes (a file, a folder holding one, or train/ valid/ test/ folders of them)."""
    from .coco import read_coco

    root = require_location("coco", location)
    records, bad, splits = read_coco(root)
    return index_records(root if root.is_dir() else root.parent, records, bad, data_cfg, image_labels, None, "COCO",
                         splits)


@register_source("csv")
def index_csv(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``csv:FILE.csv``: images and their class (and split) from a label table (see ``kdefect.data.csv_labels``)."""
    from .csv_labels import read_csv_labels

    if not image_labels:
        raise DataError(f"'{location}' is a label table, which has no boxes; detection needs VOC, YOLO or COCO data.")
    path = require_location("csv", location)
    rows, bad = read_csv_labels(path)
    if not rows:
        _apply_policy(bad, data_cfg, path.parent)  # under fail: one error naming every bad row
        raise DataError(f"label table '{path}' lists no usable image.")
    classes = sorted({label for _, label, _ in rows})
    return _index_labelled(path.parent, classes, [(p, classes.index(label), s) for p, label, s in rows], bad,
                           data_cfg, "class")


@register_source("synthetic")
def index_synthetic(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """The embedded procedural data: folder layout to classify, VOC layout to detect."""
    from .synthetic import materialize_synthetic

    cfg = data_cfg.synthetic
    if image_labels:
        root = materialize_synthetic(cfg, "folder")
        idx = index_folder(str(root), data_cfg)
        order = [c for c in cfg.classes if c in idx.classes]  # keep the configured class order
        remap = np.asarray([order.index(c) for c in idx.classes])
        idx.labels, idx.classes = remap[idx.labels], order
        return idx
    root = materialize_synthetic(cfg, "voc")
    return index_voc_root(root, data_cfg, False, [c for c in cfg.classes if c != "good"])


@register_source("tfds")
def index_tfds(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    from .tfds_source import materialize_tfds

    root = materialize_tfds(location, image_labels)
    return index_folder(str(root), data_cfg) if image_labels else index_voc_root(root, data_cfg, False)


@register_source("neu")
def index_neu(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``source: neu``: NEU-DET from $KDEFECT_NEU_DIR or ../shared/datasets/neu-det (VOC layout)."""
    from .neu import neu_dir

    root = neu_dir()
    if root is None:
        raise DataError("NEU-DET not found: set $KDEFECT_NEU_DIR to the folder holding images/ and annotations/.")
    return index_voc_root(root, data_cfg, image_labels)


@register_source("elpv")
def index_elpv(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``source: elpv[:levels|binary][:mono|poly]``: ELPV solar cells from the elpv-dataset package, as folders."""
    from .elpv import elpv_classes, materialize_elpv, parse_elpv

    if not image_labels:
        raise DataError("ELPV has one defect probability per cell image and no boxes; use it with task classify.")
    mode, cell_type = parse_elpv(location)
    idx = index_folder(str(materialize_elpv(mode, cell_type)), data_cfg)
    order = [c for c in elpv_classes(mode) if c in idx.classes]  # good first, then by severity
    remap = np.asarray([order.index(c) for c in idx.classes])
    idx.labels, idx.classes = remap[idx.labels], order
    return idx


@register_source("names")
def index_names(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``names:DIR``: one folder of images whose names carry the class (``Cr_12.bmp``; ``kdefect.data.name_labels``)."""
    from .name_labels import named_images

    if not image_labels:
        raise DataError(f"'{location}' has classes in its file names, and no boxes; detection needs VOC, YOLO or COCO.")
    root = require_location("names", location)
    rows, bad = named_images(root)
    classes = sorted({c for _, c, _ in rows})
    return _index_labelled(root, classes, [(p, classes.index(c), part) for p, c, part in rows], bad, data_cfg,
                           "file-name class")


@register_source("tfrecord")
def index_tfrecord(location: str, data_cfg, image_labels: bool = True) -> DatasetIndex:
    """``source: tfrecord:DIR``: a data set packed by ``kdefect data pack`` (checked, split and profiled once)."""
    from .packed import index_pack

    return index_pack(location, data_cfg, image_labels)


def _guess_format(p: Path) -> str:
    """The layout of a local data set: voc, yolo, coco, a label table, names (classes in flat file names) or
    (class-per-)folder."""
    from .coco import coco_files
    from .yolo import is_yolo

    if p.is_file():
        return {".json": "coco", ".csv": "csv", ".tsv": "csv"}.get(p.suffix.lower(), "folder")
    if not p.is_dir():
        return "folder"  # the folder source says it does not exist
    if voc_annotation_dir(p) is not None or any(voc_annotation_dir(d) is not None for _, d in split_subdirs(p)):
        return "voc"
    if is_yolo(p):
        return "yolo"
    if coco_files(p):
        return "coco"
    from .name_labels import looks_named

    return "names" if looks_named(p) else "folder"


def resolve_source(data_cfg) -> tuple[str, str]:
    """(source kind, location) from ``data.source`` and ``data.format``."""
    src, fmt = str(data_cfg.source), data_cfg.format
    if src in ("neu", "elpv"):
        return src, ""
    for prefix in ("voc", "yolo", "coco", "csv", "names", "tfds", "folder", "synthetic", "elpv", "tfrecord"):
        if src.startswith(prefix + ":"):
            return prefix, src[len(prefix) + 1:]
    if src == "synthetic" or fmt == "synthetic":
        return "synthetic", src
    if fmt == "auto":
        return _guess_format(Path(src).expanduser()), src
    return fmt, src


def index_dataset(data_cfg, image_labels: bool = True) -> DatasetIndex:
    """Index ``data_cfg.source`` (synthetic | PATH | voc:PATH | yolo:DIR | coco:PATH | csv:FILE | tfds:NAME | neu |
    elpv[:MODE[:TYPE]] | tfrecord:DIR); a plain PATH is a VOC, YOLO or COCO data set when it looks like one, else
    class folders.

    ``image_labels``: the task's label kind (``tasks.Task.image_labels``): one class per image, or boxes.
    """
    kind, location = resolve_source(data_cfg)
    if kind not in SOURCES:
        raise ConfigError(f"data.source kind '{kind}' is unknown; registered: {', '.join(sorted(SOURCES))}.")
    idx = SOURCES.get(kind)(location, data_cfg, image_labels)
    log.info("indexed %d images in %d classes from %s (%d skipped)", len(idx), idx.num_classes, idx.root,
             len(idx.skipped))
    return idx


def subsample_indices(labels: np.ndarray, classes: list[str], fractions: dict[str, float],
                      seed: int = 0) -> np.ndarray:
    """Sorted indices kept when class ``c`` keeps ``fractions[c]`` of its items (at least 1; seeded)."""
    labels = np.asarray(labels)
    unknown = sorted(set(fractions) - set(classes))
    if unknown:
        raise ConfigError(f"data.subsample names unknown classes {unknown}; classes are {', '.join(classes)}.")
    rng = np.random.default_rng(seed)
    keep = [np.arange(len(labels))[~np.isin(labels, [classes.index(c) for c in fractions])]]
    for c, frac in fractions.items():
        if not 0 < frac <= 1:
            raise ConfigError(f"data.subsample.{c}: fraction must be in (0, 1], got {frac}.")
        idx = np.flatnonzero(labels == classes.index(c))
        n = max(1, round(frac * len(idx))) if len(idx) else 0
        keep.append(rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)
