"""``kdefect data pack`` and ``data.source: tfrecord:``: checked at pack time, same pixels, same split, bounded."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from kdefect.config import AugmentConfig, DataConfig
from kdefect.data.packed import PACK_MANIFEST, read_pack, verify_pack
from kdefect.data.pipeline import load_images, make_dataset
from kdefect.data.sources import index_dataset
from kdefect.data.split import load_split
from kdefect.data.tfrecord import pack_dataset, packed_dataset
from kdefect.errors import ConfigError, DataError

NO_AUG = AugmentConfig(flip=False, rot90=False, brightness=0.0, contrast=0.0, crop_min_area=1.0, noise_std=0.0)


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), image_size=[24, 24], resize="squash", batch_size=8, augment=NO_AUG, **kw)


@pytest.fixture(scope="module")
def pack(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "neu-pack"
    manifest = pack_dataset(_cfg(synthetic_root), out, seed=3, shard_mb=0.01, min_train_shards=4)
    return out, manifest


def test_manifest_counts_shards_and_profile(pack):
    out, man = pack
    assert json.loads((out / PACK_MANIFEST).read_text()) == man
    assert {s: sum(c.values()) for s, c in man["counts"].items()} == {"train": 40, "val": 10, "test": 10}
    assert man["counts"]["test"] == {"crack": 2, "good": 2, "patch": 2, "scratch": 2, "spot": 2}
    train = [s for s in man["shards"] if s["split"] == "train"]
    assert len(train) >= 4 and sum(s["records"] for s in train) == 40  # shard_mb tiny: many shards
    for s in man["shards"]:
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    assert man["profile"]["n_images"] == 60 and man["profile"]["split_counts"]["val"]["good"] == 2
    assert verify_pack(out) == []


def test_changed_shard_is_refused(pack, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(pack[0], out)
    shard = next(out.glob("train-*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-3])
    assert verify_pack(out) == [shard.name]
    with pytest.raises(DataError, match="changed since packing"):
        read_pack(out)


def test_packed_pixels_match_the_folder_source(pack):
    """The record keeps the original bytes: decode + resize give the very pixels of the folder path."""
    out, _ = pack
    packed = index_dataset(_cfg(f"tfrecord:{out}")).packed
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in packed_dataset(packed, "test", _cfg(out), 5, training=False)])
    got = np.concatenate(xs).astype(np.uint8)
    paths, names = load_split(out)["test"]
    want = load_images(paths, (24, 24))
    key = lambda a: sorted(hashlib.sha256(im.tobytes()).hexdigest() for im in a)  # pack order is shuffled
    assert key(got) == key(want)
    assert sorted(np.concatenate(ys).argmax(1).tolist()) == sorted(packed.manifest["classes"].index(n) for n in names)


def test_index_keeps_the_packed_split(pack):
    out, man = pack
    idx = index_dataset(_cfg(f"tfrecord:{out}", split=[0.8, 0.1, 0.1]))
    split, profile, _ = idx.packed.plan(None, _cfg(out, split=[0.8, 0.1, 0.1]))
    assert {k: len(v) for k, v in split.items()} == {"train": 40, "val": 10, "test": 10}
    assert profile == man["profile"]
    test_paths = [idx.paths[i] for i in split["test"]]
    assert test_paths == load_split(out)["test"][0] and all(Path(p).is_file() for p in test_paths)  # the originals
    with pytest.raises(ConfigError, match="cross-validation"):
        idx.packed.plan(split, _cfg(out))


def test_training_stream_is_shuffled_batched_and_complete(pack):
    from kdefect.keras import tf

    out, _ = pack
    packed = index_dataset(_cfg(f"tfrecord:{out}")).packed
    cfg = _cfg(out, cache="none")
    ds = packed_dataset(packed, "train", cfg, 5, training=True, shuffle_buffer=8)
    assert int(ds.cardinality()) == 40 // 8  # known steps per epoch: Keras progress and images/s
    assert int(packed_dataset(packed, "train", cfg, 5, training=True, workers=2).cardinality()) < 0
    policy = tf.data.experimental.AutoShardPolicy  # by record: FILE fails below the augmentation's zip
    assert packed_dataset(packed, "train", cfg, 5, True, workers=2).options().experimental_distribute \
        .auto_shard_policy == policy.DATA
    epoch = [y.numpy().argmax(1) for _, y in ds]
    assert all(len(b) == 8 for b in epoch) and len(epoch) == 40 // 8
    assert len(set(np.concatenate(epoch)[:8].tolist())) > 1  # shards mix the classes


def test_bad_images_fail_at_pack_time(synthetic_root, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(synthetic_root, src)
    (src / "good" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        pack_dataset(_cfg(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    man = pack_dataset(_cfg(src, on_bad_image="skip"), tmp_path / "out")
    assert [p.endswith("broken.png") for p, _ in man["skipped"]] == [True]


def test_refuses_to_overwrite_a_folder_that_is_not_a_pack(synthetic_root, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not a pack"):
        pack_dataset(_cfg(synthetic_root), tmp_path)


def test_folder_source_says_when_a_pack_would_be_faster(synthetic_root, monkeypatch, caplog):
    import kdefect.data.pipeline as pipeline

    monkeypatch.setattr(pipeline, "CACHE_LIMIT_BYTES", 1)
    idx = index_dataset(_cfg(synthetic_root))
    with caplog.at_level(logging.INFO, logger="kdefect.data.pipeline"):
        make_dataset(idx.paths, idx.labels, 5, _cfg(synthetic_root), training=True)
    assert "tfrecord:" in caplog.text


def test_load_dataset_streams_a_pack(pack):
    from kdefect.data.api import load_dataset

    train, _, test, idx = load_dataset(f"tfrecord:{pack[0]}", image_size=(24, 24), batch_size=8)
    assert idx.packed is not None
    assert sum(len(y) for _, y in test) == 10 and next(iter(train))[0].shape == (8, 24, 24, 3)
