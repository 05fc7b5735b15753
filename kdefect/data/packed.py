"""``data.source: tfrecord:DIR``: a data set packed once by ``kdefect data pack`` (reading side, TF-free).

Why a pack: past the 2 GB decode cache every epoch re-reads and re-decodes
every file from the original folder, and every run re-hashes and re-profiles
it.  A pack does the checks, de-duplication, split and profile once and keeps
each image's original encoded bytes in a few large TFRecord shards (see
``kdefect.data.tfrecord``), which stream with bounded memory.

The pack also holds ``split/`` lists in the run folder's format, pointing at
the original files: training streams the shards, while evaluate, calibrate,
export and the device read those same files (identical bytes, sha256 checked
at pack time), so every later step uses exactly the packed test images.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ConfigError, DataError
from kdefect.utils.io import read_json, sha256_file

log = logging.getLogger(__name__)

PACK_MANIFEST = "pack.json"
PACK_FORMAT = "kdefect-pack/1"


@dataclass
class PackedData:
    """A packed data set: its folder, manifest and the split (indices into the index built from it)."""

    path: Path
    manifest: dict[str, Any]
    split: dict[str, np.ndarray]

    def shards(self, split: str) -> list[Path]:
        """The shard files of ``split`` in pack order."""
        return [self.path / s["file"] for s in self.manifest["shards"] if s["split"] == split]

    def records(self, split: str) -> int:
        return int(sum(s["records"] for s in self.manifest["shards"] if s["split"] == split))

    def plan(self, outside_split: dict | None, data_cfg) -> tuple[dict[str, np.ndarray], dict[str, Any], list[dict]]:
        """(split, profile, dropped) for a run: always the packed ones (checked, split and profiled once)."""
        if outside_split is not None:
            raise ConfigError("a packed data set (data.source tfrecord:) keeps the split it was packed with; "
                              "cross-validation re-splits the data: run it on the original folder instead.")
        if getattr(data_cfg, "subsample", None):
            raise ConfigError("data.subsample is not applied to a packed data set: subsample the folder, then pack.")
        packed_fr = self.manifest.get("split_fractions")
        if packed_fr and [round(float(f), 6) for f in data_cfg.split] != [round(float(f), 6) for f in packed_fr]:
            log.warning("data.split %s is ignored: the pack %s was split %s", list(data_cfg.split), self.path,
                        packed_fr)
        profile = copy.deepcopy(self.manifest["profile"])
        return dict(self.split), profile, list(self.manifest.get("dropped", []))


def verify_pack(path: str | Path) -> list[str]:
    """Shards missing or whose sha256 differs from the manifest (empty: the pack is intact)."""
    root = Path(path)
    bad = []
    for s in read_json(root / PACK_MANIFEST)["shards"]:
        f = root / s["file"]
        if not f.is_file() or sha256_file(f) != s["sha256"]:
            bad.append(s["file"])
    return bad


def read_pack(location: str | Path, verify: bool = True) -> tuple[dict[str, Any], Path]:
    """(manifest, folder) of a pack; ``verify`` re-hashes every shard so a damaged pack fails before training."""
    root = Path(location).expanduser().resolve()
    man_file = root / PACK_MANIFEST
    if not man_file.is_file():
        raise DataError(f"'{location}' is not a packed data set (no {PACK_MANIFEST}). "
                        "Make one with: kdefect data pack SOURCE OUT")
    manifest = read_json(man_file)
    if manifest.get("format") != PACK_FORMAT:
        raise DataError(f"'{root}' is a {manifest.get('format')!r} pack; this kdefect reads {PACK_FORMAT}. Re-pack it.")
    if verify and (bad := verify_pack(root)):
        raise DataError(f"pack '{root}': shard(s) {', '.join(bad)} are missing or changed since packing "
                        "(sha256 differs). Re-pack the data set.")
    return manifest, root


def index_pack(location: str, data_cfg, image_labels: bool = True):
    """A ``DatasetIndex`` over a pack: every image once, in split order, with ``packed`` set (no file is read)."""
    from .index import DatasetIndex
    from .split import SPLITS, load_split

    if not image_labels:
        raise DataError("packed data sets hold classification labels; detection trains from the VOC folder.")
    manifest, root = read_pack(location)
    classes = list(manifest["classes"])
    lists = load_split(root)
    paths: list[str] = []
    labels: list[int] = []
    split: dict[str, np.ndarray] = {}
    for name in SPLITS:
        p, names = lists[name]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"pack '{root}': split/{name}.txt names unknown classes {unknown}. Re-pack the data set.")
        split[name] = np.arange(len(paths), len(paths) + len(p), dtype=np.int64)
        paths += p
        labels += [classes.index(n) for n in names]
    skipped = [tuple(x) for x in manifest.get("skipped", [])]
    index = DatasetIndex(Path(manifest["root"]), classes, paths, np.asarray(labels, np.int64), skipped=skipped,
                         image_labels=image_labels)
    index.packed = PackedData(root, manifest, split)
    return index
