"""``load_dataset``: index, split and pipeline in one call, for users' own Keras code."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

from kdefect.config import Config, DataConfig
from kdefect.errors import DataError

from .pipeline import make_dataset
from .profile import FileScan, dedupe_index, profile_index
from .recipe import resolve_auto
from .sources import DatasetIndex, index_dataset
from .split import split_index

log = logging.getLogger(__name__)


def load_dataset(source_or_cfg: str | DataConfig | Config, image_size: Sequence[int] | None = None,
                 batch_size: int | None = None, seed: int | None = None, split: Sequence[float] | None = None):
    """``(train_ds, val_ds, test_ds, index)`` for classification.

    ``source_or_cfg``: a source string (``synthetic``, a folder, ``voc:PATH``,
    ``tfds:NAME``, ``neu``, ``tfrecord:DIR``), a DataConfig or a whole Config.  Arguments left as
    None come from the config (for a string: 64x64, batch 32, seed 0, 60/20/20).
    Datasets yield (float32 0..255 images, one-hot labels); only train_ds
    shuffles and augments.  ``auto`` settings are resolved from the data
    profile exactly as ``kdefect fit`` resolves them (and logged).
    """
    if isinstance(source_or_cfg, Config):
        if source_or_cfg.task != "classify":
            raise DataError("load_dataset builds classification datasets; detection data comes from kdefect.tasks.")
        cfg, seed = copy.deepcopy(source_or_cfg.data), source_or_cfg.seed if seed is None else seed
    elif isinstance(source_or_cfg, DataConfig):
        cfg = copy.deepcopy(source_or_cfg)
    else:
        cfg = DataConfig(source=str(source_or_cfg))
    if image_size is not None:
        cfg.image_size = [int(v) for v in image_size]
    if batch_size is not None:
        cfg.batch_size = int(batch_size)
    if split is not None:
        cfg.split = [float(v) for v in split]
    seed = 0 if seed is None else int(seed)
    index: DatasetIndex = index_dataset(cfg)
    if index.packed is not None:  # tfrecord:DIR: the packed split and profile, streamed from the shards
        parts, profile, _ = index.packed.plan(None, cfg)
    else:
        scan = FileScan()
        index, dropped = dedupe_index(index, cfg.duplicates, scan)
        parts, folders, why = split_index(index, cfg, seed)
        if folders is not None:
            log.info("auto: data.split_folders = %s  (%s)", folders, why)
        profile = profile_index(index, parts, cfg.good_label, dropped=dropped, scan=scan)
    full = Config(data=cfg)
    for choice in resolve_auto(full, profile):
        log.info("auto: %s", choice)
    cfg = full.data
    if index.packed is not None:
        from .tfrecord import packed_dataset

        return (*(packed_dataset(index.packed, name, cfg, index.num_classes, training=name == "train", seed=seed)
                  for name in ("train", "val", "test")), index)
    out = []
    for name in ("train", "val", "test"):
        sel = parts[name]
        out.append(make_dataset([index.paths[i] for i in sel], index.labels[sel], index.num_classes, cfg,
                                training=name == "train", seed=seed))
    return (*out, index)
