"""Pack a data set into sharded TFRecords once, and stream them into training.

Writing (``pack_dataset``): the same index, bad-image policy, de-duplication,
stratified split and profile as ``kdefect fit`` (so a bad image fails here,
never mid-epoch), then each split's images, shuffled (seeded) so every shard
mixes the classes, go into shards of about ``shard_mb`` MB.  A record keeps the
file's original encoded bytes, its label and its relative path: decoding and
resizing stay exactly those of the folder source (``pipeline.decode_bytes``).
``pack.json`` holds the counts per class and split, the sha256 of every shard
and the data profile; ``split/`` holds the run-format lists (see ``packed``).

Reading (``packed_dataset``): shard files (shuffled per epoch) -> parallel
interleave -> bounded shuffle buffer of encoded records -> parallel decode.
Under multi-worker training every worker reads the shards and keeps its share
of each global batch (auto-shard DATA, as the folder source does).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import DataError
from kdefect.keras import tf
from kdefect.utils.io import atomic_dir, sha256_file, write_json

from .packed import PACK_FORMAT, PACK_MANIFEST, PackedData
from .pipeline import decode_bytes, finish_dataset, prepare_image, should_cache

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 2048  # encoded records held for shuffling: bounded memory whatever the data set size
MIN_TRAIN_SHARDS = 8  # enough shard files for per-worker (FILE) sharding on up to 8 workers
_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
             "path": tf.io.FixedLenFeature([], tf.string)}


def _example(data: bytes, label: int, rel: str) -> bytes:
    feat = tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rel.encode("utf-8")])),
    })
    return tf.train.Example(features=feat).SerializeToString()


def _write_split(folder: Path, name: str, index, sel: np.ndarray, shard_bytes: int, min_shards: int,
                 seed: int) -> list[dict[str, Any]]:
    sizes = [Path(index.paths[i]).stat().st_size for i in sel]
    n_shards = max(1, min(len(sel), max(min_shards, math.ceil(sum(sizes) / shard_bytes)))) if len(sel) else 0
    order = np.random.default_rng(seed).permutation(sel) if len(sel) else sel
    root = Path(index.root)
    shards = []
    for s, part in enumerate(np.array_split(order, n_shards) if n_shards else []):
        fname = f"{name}-{s:05d}-of-{n_shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(folder / fname)) as w:
            for i in part:
                p = Path(index.paths[i])
                rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
                w.write(_example(p.read_bytes(), int(index.labels[i]), rel))
        shards.append({"file": fname, "split": name, "records": len(part), "sha256": sha256_file(folder / fname)})
        log.info("pack %s: shard %d/%d (%d images)", name, s + 1, n_shards, len(part))
    return shards


def pack_dataset(data_cfg, out: str | Path, seed: int = 0, shard_mb: float = 100.0,
                 min_train_shards: int = MIN_TRAIN_SHARDS) -> dict[str, Any]:
    """Check, de-duplicate, split and profile ``data_cfg.source``, then write it to ``out`` as TFRecord shards.

    Returns the manifest (also ``out/pack.json``).  ``out`` is written atomically;
    an existing folder is replaced only when it is itself a pack.
    """
    from .profile import FileScan, dedupe_index, profile_index
    from .sources import index_dataset
    from .split import SPLITS, save_split, split_index

    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / PACK_MANIFEST).is_file():
        raise DataError(f"'{out}' exists and is not a pack: choose an empty or new folder for the TFRecord shards.")
    scan = FileScan()
    index = index_dataset(data_cfg)
    if index.packed is not None:
        raise DataError(f"'{data_cfg.source}' is already packed; pack the original folder.")
    index, dropped = dedupe_index(index, data_cfg.duplicates, scan)
    split, folders, why = split_index(index, data_cfg, seed)
    if folders is not None:
        log.info("data.split_folders = %s (%s)", folders, why)
    profile = profile_index(index, split, data_cfg.good_label, dropped=dropped, scan=scan)
    profile["duplicates"]["dropped_files"] = dropped
    shard_bytes = int(shard_mb * 1024**2)
    with atomic_dir(out) as tmp:
        save_split(tmp, index, split)
        shards = []
        for name in SPLITS:
            shards += _write_split(tmp, name, index, np.asarray(split[name], np.int64), shard_bytes,
                                   min_train_shards if name == "train" else 1, seed)
        counts = {name: dict(zip(index.classes, np.bincount(index.labels[split[name]],
                                                            minlength=index.num_classes).tolist()))
                  for name in SPLITS}
        manifest = {"format": PACK_FORMAT, "source": str(data_cfg.source), "root": str(Path(index.root).resolve()),
                    "classes": list(index.classes),
                    "good_label": data_cfg.good_label if data_cfg.good_label in index.classes else None,
                    "seed": int(seed), "split_fractions": [float(f) for f in data_cfg.split],
                    "counts": counts, "n_images": len(index), "shards": shards, "profile": profile,
                    "skipped": [list(x) for x in index.skipped], "dropped": dropped}
        write_json(tmp / PACK_MANIFEST, manifest)
    log.info("packed %d images (%s) into %d shard(s) in %s", len(index),
             ", ".join(f"{k} {sum(v.values())}" for k, v in counts.items()), len(shards), out)
    return manifest


def _options() -> tf.data.Options:
    """Per-worker sharding by record (DATA).  Why not by shard file (FILE): tf.data's FILE rewrite finds no
    file source below the augmentation's zip and fails at the first step, and it needs >= 1 file per worker."""
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    opts.deterministic = True
    return opts


def packed_dataset(packed: PackedData, split: str, data_cfg, num_classes: int, training: bool, seed: int = 0,
                   batch_size: int | None = None, shuffle_buffer: int = SHUFFLE_BUFFER,
                   workers: int = 1) -> tf.data.Dataset:
    """(float32 image 0..255, one-hot label) batches streamed from the shards of ``split``.

    The record count from the manifest is asserted as the dataset's size, so Keras
    knows the steps per epoch (progress, images/s); not with several ``workers``
    (multi-worker), where each sees only its share.
    """
    files = [str(f) for f in packed.shards(split)]
    if not files:
        raise DataError(f"pack '{packed.path}' has no {split} shards.")
    size, ch, resize = tuple(data_cfg.image_size), data_cfg.channels, data_cfg.resize
    n = packed.records(split)
    cache = should_cache(n, data_cfg)
    if training and getattr(data_cfg, "sampling", "shuffle") == "balanced":
        log.warning("data.sampling balanced needs the folder source; the pack is shuffled (class weights still apply).")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if workers == 1:
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    if training and not cache:
        ds = ds.shuffle(min(shuffle_buffer, max(n, 1)), seed=seed, reshuffle_each_iteration=True)

    def decode(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ex = tf.io.parse_single_example(record, _FEATURES)
        return prepare_image(decode_bytes(ex["image"], ex["path"]), size, ch, resize), ex["label"]

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(min(max(n, 1), 20000), seed=seed, reshuffle_each_iteration=True)
    batch = int(batch_size or data_cfg.batch_size)
    log.debug("packed dataset %s: %d records in %d shards, cache=%s, batch=%d", split, n, len(files), cache, batch)
    return finish_dataset(ds, num_classes, data_cfg, training, seed, batch, _options())


def packed_datasets(packed: PackedData, data_cfg, num_classes: int, seed: int = 0,
                    workers: int = 1) -> dict[str, tf.data.Dataset]:
    """The training datasets of a run on a pack (train shuffles and augments; empty splits left out)."""
    return {name: packed_dataset(packed, name, data_cfg, num_classes, training=name == "train", seed=seed,
                                 workers=workers)
            for name in ("train", "val", "test") if packed.records(name)}

