"""What a dataset looks like before training: classes, geometry, colour, duplicates, leaks.

Why: the class balance, the image sizes and aspect ratios and whether "RGB"
files are really grey decide the input size, resize mode, sampling and loss;
identical files in train and test silently inflate every metric.  Everything
is read from image *headers* (no decoding) and each file is hashed (sha256 of
its bytes) in the same threaded pass; one ``FileScan`` passed to every step
of a run (profile, deduplication, leak check) keeps what it read, so each
file is hashed once, and nothing is kept between runs (no global cache).
Only a small sample of colour images is decoded, to tell grey content from
colour.  TF-free; the profile is JSON-ready (plain ints, floats, lists).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from kdefect.errors import ConfigError, DataError

from .split import SPLIT_RANK

if TYPE_CHECKING:
    from .sources import DatasetIndex

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("drop", "fail")
_SHOWN = 20  # groups / pairs named in one error message
_GREY_SAMPLE = 64  # colour images decoded (downscaled) to tell grey content from colour
_CHANNELS = {"1": 1, "L": 1, "I": 1, "F": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
             "HSV": 3, "P": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4}


class FileInfo(NamedTuple):
    sha256: str
    width: int  # 0 when the header cannot be read
    height: int
    mode: str
    bits: int  # bits per channel as decoded: 8 or 16 (32 for float / int32 TIFF)


def _bits(mode: str, data: bytes, im) -> int:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:  # IHDR bit depth (16-bit RGB opens as 8-bit "RGB")
        return 16 if data[24] == 16 else 8
    if mode.startswith("I;16"):
        return 16
    if mode in ("I", "F"):  # TIFF: trust BitsPerSample when present
        bps = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
        bps = bps[0] if isinstance(bps, tuple) else bps
        return 16 if bps == 16 else 32
    return 8


def _scan_one(path: str) -> FileInfo:
    from PIL import Image  # lazy: Pillow loads only when images are read

    with open(path, "rb") as fh:
        data = fh.read()
    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:  # parses the header only
            info = FileInfo(sha, int(im.width), int(im.height), im.mode, _bits(im.mode, data, im))
    except Exception:  # unreadable content: still hashed, no geometry
        info = FileInfo(sha, 0, 0, "", 0)
    return info


def scan_files(paths: Sequence[str | os.PathLike], workers: int | None = None) -> list[FileInfo]:
    """sha256 + header geometry of every file (threaded, order kept)."""
    paths = [str(p) for p in paths]
    if len(paths) < 32:
        return [_scan_one(p) for p in paths]
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(_scan_one, paths, chunksize=64))


class FileScan:
    """What was read of each file (sha256, header) during one run: pass the same instance to every step."""

    def __init__(self) -> None:
        self._info: dict[str, FileInfo] = {}

    def infos(self, paths: Sequence[str | os.PathLike]) -> list[FileInfo]:
        """FileInfo per path (order kept); only files this scan has not read yet are read."""
        paths = [str(p) for p in paths]
        missing = [p for p in dict.fromkeys(paths) if p not in self._info]
        if missing:
            self._info.update(zip(missing, scan_files(missing)))
        return [self._info[p] for p in paths]


def file_hashes(paths: Sequence[str | os.PathLike], scan: FileScan | None = None) -> list[str]:
    """sha256 of each file's bytes; with ``scan``, files it already read are not read again."""
    return [f.sha256 for f in (scan or FileScan()).infos(paths)]


def find_duplicates(paths: Sequence[str | os.PathLike], scan: FileScan | None = None) -> list[list[int]]:
    """Groups (>= 2, in first-seen order) of indices into ``paths`` whose files have identical bytes."""
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(file_hashes(paths, scan)):
        groups.setdefault(h, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _rel(index, path: str) -> str:
    p, root = Path(path), Path(index.root)
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def _label_name(index, i: int) -> str:
    lab = int(index.labels[i])
    name = index.classes[lab] if lab >= 0 else "(no objects)"
    if index.boxes is not None:
        names = sorted(index.classes[int(k)] for k in index.box_labels[i])
        name = f"{len(names)} box(es): {', '.join(names)}" if names else "(no objects)"
    return name


def _annotation_key(index, i: int) -> tuple:
    """What must agree between identical files: the label, and for detection the boxes too."""
    if index.boxes is None:
        return (int(index.labels[i]),)
    rows = np.round(np.asarray(index.boxes[i], np.float64).reshape(-1, 4), 1).tolist()
    return int(index.labels[i]), tuple(sorted(zip(map(tuple, rows), np.asarray(index.box_labels[i]).tolist())))


def dedupe_index(index: DatasetIndex, policy: str, scan: FileScan | None = None
                 ) -> tuple[DatasetIndex, list[dict]]:
    """Apply ``data.duplicates`` before splitting; returns (new index, records of dropped files).

    ``drop``: of identical files with the same label keep the first (in a data set that comes split, the one in
    the earliest split: train, val, test), so a test copy of a training image never reaches the test split; identical
    files with *different* labels (a label conflict) are all dropped.  Records:
    ``{path, duplicate_of, label, reason}``.  ``fail``: any identical files raise.
    """
    if policy not in DUPLICATE_POLICIES:
        raise ConfigError(f"data.duplicates '{policy}' is unknown; use {' or '.join(DUPLICATE_POLICIES)}.")
    groups = find_duplicates(index.paths, scan)
    if not groups:
        return index, []
    if index.split_names is not None:  # a data set split by its makers: the training copy is the one kept
        groups = [sorted(g, key=lambda i: (SPLIT_RANK.get(index.split_names[i], 3), i)) for g in groups]
    conflict = [len({_annotation_key(index, i) for i in g}) > 1 for g in groups]
    if policy == "fail":
        lines = []
        for g, bad in zip(groups[:_SHOWN], conflict):
            files = ", ".join(f"{_rel(index, index.paths[i])} ({_label_name(index, i)})" for i in g)
            lines.append(f"  {'LABEL CONFLICT: ' if bad else ''}{files}")
        more = f"\n  ... and {len(groups) - _SHOWN} more group(s)" if len(groups) > _SHOWN else ""
        raise DataError(
            f"{len(groups)} group(s) of identical files in '{index.root}':\n" + "\n".join(lines) + more +
            "\nRemove the extra copies (and fix conflicting labels), or set data.duplicates=drop to keep the "
            "first copy of each and drop files whose copies disagree on the label."
        )
    drop: list[dict] = []
    gone: set[int] = set()
    for g, bad in zip(groups, conflict):
        for j, i in enumerate(g):
            if bad or j:
                other = g[1] if bad and j == 0 else g[0]
                drop.append({"path": index.paths[i], "duplicate_of": index.paths[other],
                             "label": _label_name(index, i), "reason": "label conflict" if bad else "duplicate"})
                gone.add(i)
    keep = np.asarray([i for i in range(len(index)) if i not in gone], np.int64)
    new = index.subset(keep)
    if index.image_labels:
        before = np.bincount(index.labels, minlength=index.num_classes)
        after = np.bincount(new.labels, minlength=index.num_classes)
        if empty := [c for c, b, a in zip(index.classes, before, after) if b and not a]:
            files = "\n".join([f"  {_rel(index, r['path'])} ({r['label']}): {r['reason']} of "
                              f"{_rel(index, r['duplicate_of'])}" for r in drop if r["label"] in empty][:_SHOWN])
            raise DataError(f"dropping duplicate / conflicting files leaves class(es) {empty} empty in "
                            f"'{index.root}':\n{files}\nFix the labels of these identical files.")
    n_conf = sum(r["reason"] == "label conflict" for r in drop)
    log.warning("dropped %d duplicate file(s) (%d with conflicting labels) in %s", len(drop), n_conf, index.root)
    for r in drop[:_SHOWN]:
        log.warning("  %s (%s): %s of %s", r["path"], r["label"], r["reason"], r["duplicate_of"])
    return new, drop


def check_split_leaks(index: DatasetIndex, split: dict[str, np.ndarray], scan: FileScan | None = None) -> None:
    """Raise DataError when identical files sit in two different splits (e.g. outside-made folds)."""
    hashes = file_hashes(index.paths, scan)
    seen: dict[str, tuple[str, int]] = {}
    leaks = []
    for name, idx in split.items():
        for i in np.asarray(idx, np.int64):
            h = hashes[i]
            if h in seen and seen[h][0] != name:
                leaks.append((seen[h], (name, int(i))))
            seen.setdefault(h, (name, int(i)))
    if leaks:
        lines = [f"  {a}/{_rel(index, index.paths[i])} and {b}/{_rel(index, index.paths[j])} are the same image: "
                 f"a leak between {a} and {b} inflates every metric; remove one" for (a, i), (b, j) in leaks[:_SHOWN]]
        more = f"\n  ... and {len(leaks) - _SHOWN} more" if len(leaks) > _SHOWN else ""
        raise DataError(f"{len(leaks)} identical file(s) in more than one split of '{index.root}':\n"
                        + "\n".join(lines) + more)


def _stats(values) -> dict[str, float] | None:
    v = np.asarray(values, np.float64)
    if not len(v):
        return None
    q = np.percentile(v, [0, 10, 50, 90, 100])
    return {k: round(float(x), 4) for k, x in zip(("min", "p10", "median", "p90", "max"), q)}


def _box_sizes(boxes: list[np.ndarray], infos: list) -> dict:
    """Each box's smaller side, in pixels and as a share of its image's side along that axis.

    Why the share: a squash resize to S x S makes a box ``share * S`` pixels wide, so the share tells what
    input size keeps the smallest defects visible (``recipe``: detection's ``data.image_size``).
    """
    px, rel = [], []
    for b, f in zip(boxes, infos):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        if not len(b) or f.width <= 0:
            continue
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        px += np.minimum(bw, bh).tolist()
        rel += np.minimum(bw / f.width, bh / f.height).tolist()
    return {"n": len(px), "min_side_px": _stats(px), "min_side_share": _stats(rel)}


def _is_grey(path: str) -> bool | None:
    from PIL import Image  # lazy: Pillow loads only when images are read

    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))  # JPEG: decode at 1/8 scale
            im = im.convert("RGB")
            if max(im.size) > 256:
                im = im.reduce(max(1, max(im.size) // 128))
            a = np.asarray(im, np.int16)
    except Exception:
        return None
    diff = np.maximum(np.abs(a[..., 0] - a[..., 1]), np.abs(a[..., 1] - a[..., 2]))
    return bool(np.mean(diff > 8) < 0.01)  # JPEG chroma noise on grey content stays tiny


def _counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    labels = np.asarray(labels, np.int64)
    out = {c: int(n) for c, n in zip(classes, np.bincount(labels[labels >= 0], minlength=len(classes)))}
    if (labels < 0).any():
        out["(no objects)"] = int((labels < 0).sum())
    return out


def profile_index(index: DatasetIndex, split: dict[str, np.ndarray] | None = None, good_label: str | None = None,
                  dropped: list[dict] | None = None, scan: FileScan | None = None) -> dict:
    """JSON-ready profile of ``index`` (see module docstring); ``dropped`` = dedupe_index's records."""
    scan = scan or FileScan()
    infos = scan.infos(index.paths)
    counts = _counts(index.labels, index.classes)
    prof: dict = {"n_images": len(index), "n_skipped": len(index.skipped), "image_labels": index.image_labels,
                  "classes": list(index.classes), "class_counts": counts}
    if split is not None:
        prof["split_counts"] = {s: _counts(index.labels[np.asarray(ix, np.int64)], index.classes)
                                for s, ix in split.items()}
    basis = prof["split_counts"].get("train", counts) if split is not None else counts
    per_class = [basis.get(c, 0) for c in index.classes]
    prof["imbalance_ratio"] = (round(max(per_class) / min(per_class), 4)
                               if per_class and min(per_class) > 0 else None)
    prof["imbalance_on"] = "train" if split is not None and "train" in split else "all"
    if good_label and good_label in index.classes:
        prof["good_share"] = round(counts[good_label] / max(1, len(index)), 4)
    if index.box_labels is not None:
        objs = np.concatenate([np.asarray(b, np.int64) for b in index.box_labels] or [np.zeros(0, np.int64)])
        prof["object_counts"] = _counts(objs, index.classes)
    if index.boxes is not None:
        prof["boxes"] = _box_sizes(index.boxes, infos)
    ok = [f for f in infos if f.width > 0]
    w = np.asarray([f.width for f in ok], np.float64)
    h = np.asarray([f.height for f in ok], np.float64)
    short, long_ = np.minimum(w, h), np.maximum(w, h)
    aspect = long_ / np.maximum(short, 1)
    prof["geometry"] = {"width": _stats(w), "height": _stats(h), "short_side": _stats(short), "long_side": _stats(long_),
                        "aspect": _stats(aspect),
                        "aspect_ge_1_5_share": round(float(np.mean(aspect >= 1.5)), 4) if len(ok) else 0.0,
                        "unreadable_headers": len(infos) - len(ok)}
    colour_idx = [i for i, f in enumerate(infos) if _CHANNELS.get(f.mode, 1) >= 3]
    pick = [colour_idx[int(k)] for k in np.linspace(0, len(colour_idx) - 1, min(_GREY_SAMPLE, len(colour_idx)))]
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 2) * 2)) as pool:
        grey = [g for g in pool.map(_is_grey, [index.paths[i] for i in pick]) if g is not None]
    prof["colour"] = {
        "modes": dict(sorted(Counter(f.mode for f in ok).items())),
        "channels": {str(k): n for k, n in sorted(Counter(_CHANNELS.get(f.mode, 1) for f in ok).items())},
        "bit_depth": {str(k): n for k, n in sorted(Counter(f.bits for f in ok).items())},
        "colour_images": len(colour_idx), "grey_checked": len(grey), "grey_of_checked": int(sum(grey)),
        "colour_is_grey": bool(grey) and all(grey),
    }
    groups = find_duplicates(index.paths, scan)
    prof["duplicates"] = {"groups": len(groups), "extra_copies": sum(len(g) - 1 for g in groups),
                          "dropped": len(dropped or []),
                          "label_conflicts_dropped": sum(r.get("reason") == "label conflict" for r in dropped or [])}
    return prof


def format_profile(profile: dict) -> str:
    """A short human summary of a profile_index result."""
    n = max(1, profile["n_images"])
    lines = [f"{profile['n_images']} images, {len(profile['classes'])} classes"
             + (f" ({profile['n_skipped']} skipped)" if profile.get("n_skipped") else "")]
    lines += [f"  {c:<16} {k:>7}  {100 * k / n:5.1f}%" for c, k in profile["class_counts"].items()]
    if profile.get("imbalance_ratio") is not None:
        lines.append(f"imbalance (largest/smallest, {profile.get('imbalance_on', 'all')}): "
                     f"{profile['imbalance_ratio']:.1f}")
    if "good_share" in profile:
        lines.append(f"good share: {100 * profile['good_share']:.1f}%")
    g = profile["geometry"]
    if g["width"]:
        lines.append(f"size: median {g['width']['median']:.0f}x{g['height']['median']:.0f} px, width "
                     f"{g['width']['min']:.0f}-{g['width']['max']:.0f}, height {g['height']['min']:.0f}-"
                     f"{g['height']['max']:.0f}, short side {g['short_side']['min']:.0f}-{g['short_side']['max']:.0f}")
        lines.append(f"aspect (long/short): median {g['aspect']['median']:.2f}, max {g['aspect']['max']:.2f}, "
                     f"{100 * g['aspect_ge_1_5_share']:.1f}% >= 1.5")
    c = profile["colour"]
    ch = ", ".join(f"{k}ch x{v}" for k, v in c["channels"].items())
    bits = ", ".join(f"{k}-bit x{v}" for k, v in c["bit_depth"].items())
    grey = (f"; colour files are grey ({c['grey_of_checked']}/{c['grey_checked']} checked)"
            if c["colour_is_grey"] else "")
    lines.append(f"channels: {ch}; {bits}{grey}")
    b = (profile.get("boxes") or {}).get("min_side_px")
    if b:
        lines.append(f"boxes: {profile['boxes']['n']}, smaller side p10 {b['p10']:.0f} px, median {b['median']:.0f} px "
                     f"(p10 {100 * profile['boxes']['min_side_share']['p10']:.1f}% of the image side)")
    d = profile["duplicates"]
    if d["dropped"] or d["groups"]:
        lines.append(f"duplicates: {d['dropped']} dropped ({d['label_conflicts_dropped']} label conflicts), "
                     f"{d['extra_copies']} extra copies left")
    return "\n".join(lines)
