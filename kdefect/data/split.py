"""Stratified, seeded train / val / test splits and their lists in the run folder.

Why saved lists: every later ``evaluate``, calibration or export must use the
same test images as training did, even if files are added to the dataset
folder later.  Lists hold paths relative to the dataset root (plus
``split/root.txt`` naming that root) so a run folder survives a moved dataset
(``load_split(run_dir, root=NEW)``).  TF-free.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdefect.core.files import is_clutter
from kdefect.errors import ConfigError, DataError
from kdefect.utils.io import atomic_dir, write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# folder names (lower case) of a data set that comes already split, and the split each one feeds
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}


# which copy of identical files in two given splits is kept: the training one ('' = no split given)
SPLIT_RANK = {"train": 0, "val": 1, "test": 2, "": 3}


def split_subdirs(root: Path) -> list[tuple[str, Path]]:
    """``[(split, folder), ...]`` for the split-named subfolders of ``root`` (train/, valid/, test/ ...), sorted."""
    return [(SPLIT_FOLDERS[d.name.lower()], d) for d in sorted(root.iterdir())
            if d.is_dir() and not is_clutter(d.name) and d.name.lower() in SPLIT_FOLDERS]


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Counts per split: rounded, but every split with a positive fraction gets >=1 item when n allows."""
    counts = [round(f * n) for f in fractions]
    counts[0] = n - sum(counts[1:])
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            while counts[i] < 1:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    while counts[0] < 0:  # rounding overshoot on tiny classes
        j = max(range(1, len(counts)), key=lambda k: counts[k])
        counts[j] -= 1
        counts[0] += 1
    return counts


def stratified_split(labels: Sequence[int] | np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Indices per split (sorted), class proportions kept; each class with >=3 items is in every split."""
    labels = np.asarray(labels)
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0:
        raise ConfigError(f"data.split must be three fractions (train, val, test) summing to 1, got {list(fractions)}.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, cnt in zip(SPLITS, _allocate(len(idx), fr)):
            parts[name].append(idx[start:start + cnt])
            start += cnt
    return {s: np.sort(np.concatenate(parts[s])).astype(np.int64) if parts[s] else np.zeros(0, np.int64)
            for s in SPLITS}


def kfold_splits(labels: Sequence[int] | np.ndarray, k: int = 5, seed: int = 0,
                 val_fraction: float = 0.2) -> list[dict[str, np.ndarray]]:
    """Stratified K folds for cross-validation: fold i tests on its 1/k; its val is carved from the rest."""
    labels = np.asarray(labels)
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}.")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold_of[idx] = (np.arange(len(idx)) + offset) % k  # rotate so small classes spread over folds
        offset += len(idx)
    folds = []
    for i in range(k):
        test = np.flatnonzero(fold_of == i)
        rest = np.flatnonzero(fold_of != i)
        inner = stratified_split(labels[rest], (1 - val_fraction, val_fraction, 0.0), seed + i + 1)
        folds.append({"train": rest[inner["train"]], "val": rest[inner["val"]], "test": test})
    return folds


def save_split(run_dir: str | Path, index, split: dict[str, np.ndarray]) -> Path:
    """Write ``run_dir/split/{train,val,test}.txt`` (``path<TAB>label``) and ``root.txt``, atomically."""
    root = Path(index.root).resolve()
    out = Path(run_dir) / "split"
    with atomic_dir(out) as tmp:
        for name in SPLITS:
            lines = []
            for i in split.get(name, []):
                p = Path(index.paths[i])
                rel = p.relative_to(root) if p.is_relative_to(root) else p
                lab = int(index.labels[i])
                lines.append(f"{rel.as_posix()}\t{index.classes[lab] if lab >= 0 else ''}\n")
            (tmp / f"{name}.txt").write_text("".join(lines), encoding="utf-8")
        (tmp / "root.txt").write_text(f"{root}\n", encoding="utf-8")
    return out


def load_split(run_dir: str | Path, root: str | Path | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """``{split: (absolute paths, label names)}`` from a run folder; ``root`` re-bases a moved dataset."""
    folder = Path(run_dir) / "split"
    if not (folder / "train.txt").is_file():
        raise DataError(f"no split lists in '{folder}'. Is '{run_dir}' a kdefect run folder?")
    if root is None:
        root_file = folder / "root.txt"
        root = root_file.read_text(encoding="utf-8").strip() if root_file.is_file() else folder.parent
    base = Path(root)
    result = {}
    for name in SPLITS:
        f = folder / f"{name}.txt"
        paths, labels = [], []
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines() if f.is_file() else []):
            if not line.strip():
                continue
            if "\t" not in line:
                raise DataError(f"{f}:{n + 1}: expected 'path<TAB>label', got {line!r}.")
            p, lab = line.rsplit("\t", 1)
            paths.append(str(base / p) if not Path(p).is_absolute() else p)
            labels.append(lab)
        result[name] = (paths, labels)
    return result


def label_indices(classes: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Class indices of label names (a split file's second column); a DataError names a label the run lacks."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise DataError(f"labels {unknown} are not among the run's classes {list(classes)}: the split files and "
                        "classes.json disagree. Re-create the run with `kdefect fit`.")
    return np.array([lookup[n] for n in names], dtype=int)


def write_skipped(run_dir: str | Path, skipped: Sequence[tuple[str, str]]) -> Path | None:
    """``run_dir/skipped.csv`` (path, reason) when files were skipped; None when there were none."""
    if not skipped:
        return None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    return write_text(Path(run_dir) / "skipped.csv", buf.getvalue())


def split_from_run(paths: Sequence[str], run_dir: str | Path) -> dict[str, np.ndarray]:
    """Indices into ``paths`` of another run's train/val/test lists (``data.split_from``), matched by file.

    Images of the run that this data set lacks, and images of this data set in none of the run's lists (a
    duplicate dropped differently), are left out and logged; a split left empty that the run had is an error.
    """
    lists = load_split(run_dir)
    pos = {str(Path(p).resolve()): i for i, p in enumerate(paths)}
    out: dict[str, np.ndarray] = {}
    missing = 0
    for name, (files, _labels) in lists.items():
        idx = [pos.get(str(Path(f).resolve()), -1) for f in files]
        missing += idx.count(-1)
        out[name] = np.asarray([i for i in idx if i >= 0], np.int64)
        if files and not len(out[name]):
            raise DataError(f"data.split_from '{run_dir}': none of its {len(files)} {name} images is in this data "
                            "set. Both runs must read the same images (data.source).")
    left = len(paths) - sum(len(v) for v in out.values())
    if missing or left:
        log.warning("data.split_from %s: %d of its images are not in this data set and %d of this data set's "
                    "images are in none of its splits; both are left out", run_dir, missing, left)
    return out


def split_index(index, data_cfg, seed: int = 0) -> tuple[dict[str, np.ndarray], str | None, str | None]:
    """(split, resolved ``data.split_folders``, reason) for a de-duplicated index.

    A data set that came split into train/ (val/) test/ folders keeps that split (``keep``), so its results compare
    with the published ones and its test images stay unseen. A split it lacks (often val/) is carved, stratified,
    from train/ in the proportions of ``data.split``. Under ``auto`` the given split is pooled instead when train/
    lacks a class (a model cannot learn a class it never sees: MVTec AD's train/ holds only good parts).
    Any other data set is split by ``data.split``; the value and reason are then None.
    """
    fractions = tuple(float(f) for f in data_cfg.split)
    names = getattr(index, "split_names", None)
    mode = getattr(data_cfg, "split_folders", "auto")
    if names is None:
        return stratified_split(index.labels, fractions, seed=seed), None, None
    names = np.asarray(names)
    given = {s: np.flatnonzero(names == s) for s in SPLITS}
    counts = ", ".join(f"{s}/ {len(v)}" for s, v in given.items() if len(v))
    if mode == "pool":
        return (stratified_split(index.labels, fractions, seed=seed), "pool",
                f"split folders ({counts}) pooled and split {list(fractions)} as set")
    if index.box_labels is not None:  # detection: a class is learnt from its boxes, dominant in the image or not
        seen = {int(k) for i in given["train"] for k in index.box_labels[i]}
    else:
        seen = set(index.labels[given["train"]].tolist())
    missing = [c for i, c in enumerate(index.classes) if i not in seen]
    if missing:
        what = f"train/ has no images of {', '.join(repr(c) for c in missing)}"
        if mode == "keep":
            raise DataError(f"data.split_folders=keep, but {what} in '{index.root}': the model could not learn "
                            "them. Add them to train/, or set data.split_folders=pool to split everything anew.")
        return (stratified_split(index.labels, fractions, seed=seed), "pool",
                f"{what} ({counts}) -> pooled and split {list(fractions)}")
    split = {s: v.astype(np.int64) for s, v in given.items()}
    carved = [s for s in ("val", "test") if not len(given[s])]
    if carved:  # the missing parts come from train/, in data.split's proportions among themselves
        fr = {"train": fractions[0], "val": fractions[1], "test": fractions[2]}
        inner_fr = [fr["train"], *(fr[s] if s in carved else 0.0 for s in ("val", "test"))]
        total = sum(inner_fr)
        inner = stratified_split(index.labels[given["train"]], [f / total for f in inner_fr], seed=seed)
        split["train"] = given["train"][inner["train"]]
        for s in carved:
            split[s] = given["train"][inner[s]]
    if no_test := [c for i, c in enumerate(index.classes) if not np.any(index.labels[split["test"]] == i)]:
        log.warning("the test split has no images of %s: their recall cannot be measured",
                    ", ".join(repr(c) for c in no_test))
    how = f"; {' and '.join(s + '/' for s in carved)} carved from train/ by data.split" if carved else ""
    return split, "keep", f"the data set comes split ({counts}) -> kept{how}"


def own_test_part(index, source: str):
    """The ``test/`` images of a data set that comes split into folders, else the whole index.

    Why: ``evaluate --data`` on a split data set must not score the model on that set's training images.
    """
    if index.split_names is None or "test" not in index.split_names:
        return index
    test = np.flatnonzero(np.asarray(index.split_names) == "test")
    log.info("'%s' is split into folders: evaluating its test/ images only (%d of %d)", source, len(test), len(index))
    return index.subset(test)
