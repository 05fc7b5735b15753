"""Stratified splits, K folds and the run folder's split lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdefect.data.sources import DatasetIndex
from kdefect.data.split import kfold_splits, load_split, save_split, stratified_split
from kdefect.errors import ConfigError

LABELS = np.repeat([0, 1, 2, 3], [100, 50, 10, 3])


def test_proportions_and_coverage():
    s = stratified_split(LABELS, (0.6, 0.2, 0.2), seed=0)
    allidx = np.concatenate(list(s.values()))
    assert sorted(allidx.tolist()) == list(range(len(LABELS)))  # a partition
    for name, frac in zip(("train", "val", "test"), (0.6, 0.2, 0.2)):
        counts = np.bincount(LABELS[s[name]], minlength=4)
        assert (counts >= 1).all()  # every class, even the 3-image one
        assert abs(counts[0] - 100 * frac) <= 1 and abs(counts[1] - 50 * frac) <= 1


def test_deterministic_and_seeded():
    a, b = stratified_split(LABELS, seed=5), stratified_split(LABELS, seed=5)
    c = stratified_split(LABELS, seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_bad_fractions():
    with pytest.raises(ConfigError, match="summing to 1"):
        stratified_split(LABELS, (0.5, 0.2, 0.2))


def test_kfold():
    folds = kfold_splits(LABELS, k=5, seed=0)
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(len(LABELS)))  # each item tested exactly once
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and not set(f["train"]) & set(f["test"])
        assert len(f["train"]) + len(f["val"]) + len(f["test"]) == len(LABELS)
        assert abs(np.sum(LABELS[f["test"]] == 0) - 20) <= 1


def test_save_load_roundtrip(tmp_path):
    root = tmp_path / "data"
    paths = [str(root / f"c{lab}" / f"{i}.png") for i, lab in enumerate(LABELS)] + ["/elsewhere/x.png"]
    idx = DatasetIndex(root, ["a", "b", "c", "d"], paths, np.append(LABELS, 0))
    split = stratified_split(idx.labels, seed=1)
    save_split(tmp_path / "run", idx, split)
    written = [ln.split("\t")[0] for name in ("train", "val", "test")
               for ln in (tmp_path / "run" / "split" / f"{name}.txt").read_text().splitlines()]
    assert sorted(written) == sorted([f"c{lab}/{i}.png" for i, lab in enumerate(LABELS)] + ["/elsewhere/x.png"])
    loaded = load_split(tmp_path / "run")
    assert sorted(p for paths, _ in loaded.values() for p in paths) == sorted(str(Path(p).resolve()) for p in paths)
    loaded = load_split(tmp_path / "run")
    for name, sel in split.items():
        assert loaded[name][0] == [paths[i] for i in sel]
        assert loaded[name][1] == [idx.classes[idx.labels[i]] for i in sel]
    moved = load_split(tmp_path / "run", root=tmp_path / "moved")
    assert all(p.startswith(str(tmp_path / "moved")) or p.startswith("/elsewhere") for p in moved["train"][0])


def test_label_indices_name_an_unknown_label():
    from kdefect.data.split import label_indices
    from kdefect.errors import DataError

    assert label_indices(["a", "b", "c"], ["c", "a", "c"]).tolist() == [2, 0, 2]
    with pytest.raises(DataError, match=r"\['z'\]"):
        label_indices(["a", "b"], ["a", "z"])


def _index(tmp_path: Path, n: int) -> DatasetIndex:
    paths = []
    for i in range(n):
        f = tmp_path / "data" / f"img{i:02d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
        paths.append(str(f))
    return DatasetIndex(tmp_path / "data", ["a", "b"], paths, np.arange(n) % 2)


def test_split_from_run_takes_another_runs_lists_file_by_file(tmp_path, caplog):
    from kdefect.data.split import split_from_run

    index = _index(tmp_path, 12)
    split = stratified_split(index.labels, (0.5, 0.25, 0.25), seed=3)
    save_split(tmp_path / "run", index, split)
    # the same files indexed in another order, one of them missing: positions differ, files match
    order = [index.paths[i] for i in range(11, -1, -1) if i != 5]
    got = split_from_run(order, tmp_path / "run")
    for name in ("train", "val", "test"):
        want = {index.paths[i] for i in split[name] if i != 5}
        assert {order[i] for i in got[name]} == want, name
    assert "1 of its images are not in this data set" in caplog.text
    with pytest.raises(Exception, match="none of its"):
        split_from_run([str(tmp_path / "other.png")], tmp_path / "run")
