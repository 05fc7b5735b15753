"""Data profile: counts, imbalance, header geometry, colour, duplicates, split leaks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.data.profile import (
    check_split_leaks,
    dedupe_index,
    file_hashes,
    find_duplicates,
    format_profile,
    profile_index,
)
from kdefect.data.sources import index_dataset
from kdefect.errors import ConfigError, DataError


@pytest.fixture
def root(tmp_path):
    """good x8 (40x20 grey, one of them 16-bit), scratch x2 (30x30 RGB; one is grey content); all distinct."""
    rng = np.random.default_rng(0)
    (tmp_path / "good").mkdir()
    (tmp_path / "scratch").mkdir()
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (20, 40), np.uint8)).save(tmp_path / "good" / f"g{i}.png")
    Image.fromarray(rng.integers(0, 65535, (20, 40), np.uint16)).save(tmp_path / "good" / "g7.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), np.uint8)).save(tmp_path / "scratch" / "s0.png")
    grey = rng.integers(0, 255, (30, 30, 1), np.uint8).repeat(3, axis=2)
    Image.fromarray(grey).save(tmp_path / "scratch" / "s1.png")
    return tmp_path


def _index(root):
    return index_dataset(DataConfig(source=str(root)))


def test_profile_counts_geometry_colour(root):
    idx = _index(root)
    prof = profile_index(idx, good_label="good")
    json.dumps(prof)  # JSON-ready
    assert prof["n_images"] == 10
    assert prof["class_counts"] == {"good": 8, "scratch": 2}
    assert prof["imbalance_ratio"] == 4.0 and prof["good_share"] == 0.8
    g = prof["geometry"]
    assert g["width"]["min"] == 30 and g["width"]["max"] == 40 and g["height"]["median"] == 20
    assert g["short_side"]["max"] == 30
    assert g["aspect"]["min"] == 1.0 and g["aspect"]["max"] == 2.0 and g["aspect"]["median"] == 2.0
    assert g["aspect_ge_1_5_share"] == 0.8
    c = prof["colour"]
    assert c["channels"] == {"1": 8, "3": 2}
    assert c["bit_depth"] == {"16": 1, "8": 9}
    assert c["modes"]["RGB"] == 2 and c["modes"]["L"] == 7
    assert c["grey_checked"] == 2 and c["grey_of_checked"] == 1 and not c["colour_is_grey"]
    assert prof["duplicates"] == {"groups": 0, "extra_copies": 0, "dropped": 0, "label_conflicts_dropped": 0}
    text = format_profile(prof)
    assert "good" in text and "80.0%" in text and "imbalance" in text and "4.0" in text


def test_profile_per_split_and_train_imbalance(root):
    idx = _index(root)
    split = {"train": np.array([0, 1, 2, 3, 8]), "val": np.array([4, 5, 9]), "test": np.array([6, 7])}
    prof = profile_index(idx, split, good_label="good")
    assert prof["split_counts"]["train"] == {"good": 4, "scratch": 1}
    assert prof["split_counts"]["test"] == {"good": 2, "scratch": 0}
    assert prof["imbalance_ratio"] == 4.0 and prof["imbalance_on"] == "train"
    json.dumps(prof)


def test_duplicates_same_label_dropped(root):
    shutil.copy(root / "good" / "g0.png", root / "good" / "g0_copy.png")
    shutil.copy(root / "good" / "g0.png", root / "good" / "g0_copy2.png")
    idx = _index(root)
    groups = find_duplicates(idx.paths)
    assert len(groups) == 1 and len(groups[0]) == 3
    new, dropped = dedupe_index(idx, "drop")
    assert len(new) == 10 and len(dropped) == 2
    assert {r["reason"] for r in dropped} == {"duplicate"}
    assert all(r["duplicate_of"].endswith("g0.png") and r["label"] == "good" for r in dropped)
    assert len(find_duplicates(new.paths)) == 0
    prof = profile_index(new, good_label="good", dropped=dropped)
    assert prof["duplicates"]["dropped"] == 2
    assert "2 dropped" in format_profile(prof)
    json.dumps(dropped)


def test_duplicates_fail_policy_names_files(root):
    shutil.copy(root / "good" / "g0.png", root / "good" / "g0_copy.png")
    with pytest.raises(DataError, match=r"(?s)good/g0.png.*good/g0_copy.png.*data.duplicates=drop"):
        dedupe_index(_index(root), "fail")
    with pytest.raises(ConfigError):
        dedupe_index(_index(root), "keep")


def test_conflicting_labels(root):
    shutil.copy(root / "good" / "g1.png", root / "scratch" / "looks_good.png")
    idx = _index(root)
    with pytest.raises(DataError, match=r"(?s)LABEL CONFLICT.*good/g1.png \(good\).*scratch/looks_good.png"):
        dedupe_index(idx, "fail")
    new, dropped = dedupe_index(idx, "drop")  # drop: every copy of a conflicting group goes, reported
    assert len(new) == 9 and {r["reason"] for r in dropped} == {"label conflict"}
    assert sorted(r["label"] for r in dropped) == ["good", "scratch"]
    assert not any(p.endswith(("g1.png", "looks_good.png")) for p in new.paths)


def test_no_duplicates_returns_same_index(root):
    idx = _index(root)
    new, dropped = dedupe_index(idx, "drop")
    assert new is idx and dropped == []


def test_split_leak_raises_naming_both(root):
    shutil.copy(root / "good" / "g2.png", root / "good" / "zz_same.png")
    idx = _index(root)
    a = idx.paths.index(str(root / "good" / "g2.png"))
    b = idx.paths.index(str(root / "good" / "zz_same.png"))
    rest = [i for i in range(len(idx)) if i not in (a, b)]
    check_split_leaks(idx, {"train": np.array([*rest, a, b]), "val": np.array([]), "test": np.array([])})
    with pytest.raises(DataError, match=r"train/good/g2.png and test/good/zz_same.png are the same image"):
        check_split_leaks(idx, {"train": np.array([*rest, a]), "val": np.array([], int), "test": np.array([b])})


def test_one_scan_hashes_each_file_once(root, monkeypatch):
    from kdefect.data.profile import FileScan

    idx = _index(root)
    scan = FileScan()
    first = file_hashes(idx.paths, scan)
    import kdefect.data.profile as prof_mod

    monkeypatch.setattr(prof_mod.hashlib, "sha256", lambda *_: pytest.fail("file hashed twice"))
    assert file_hashes(idx.paths, scan) == first
    new, _ = dedupe_index(idx, "drop", scan)
    check_split_leaks(new, {"train": np.arange(len(new))}, scan)
    profile_index(new, scan=scan)


def test_drop_that_empties_a_class_raises(root):
    (root / "solo").mkdir()
    shutil.copy(root / "good" / "g3.png", root / "solo" / "only.png")
    with pytest.raises(DataError, match=r"(?s)\['solo'\] empty.*solo/only.png \(solo\): label conflict"):
        dedupe_index(_index(root), "drop")


def test_detection_index_duplicates(root):
    from kdefect.data.sources import DatasetIndex

    shutil.copy(root / "good" / "g0.png", root / "good" / "g0_copy.png")
    shutil.copy(root / "good" / "g0.png", root / "good" / "g0_other_boxes.png")
    paths = [str(root / "good" / n) for n in ("g0.png", "g0_copy.png", "g1.png")]
    box = np.array([[1, 2, 10, 12]], np.float32)
    idx = DatasetIndex(root, ["scratch"], paths, np.array([0, 0, -1]), boxes=[box, box.copy(), np.zeros((0, 4))],
                       box_labels=[np.array([0]), np.array([0]), np.zeros(0, np.int64)], image_labels=False)
    new, dropped = dedupe_index(idx, "drop")
    assert new.paths == [paths[0], paths[2]] and dropped[0]["reason"] == "duplicate"
    assert len(new.boxes) == 2 and new.labels.tolist() == [0, -1]
    idx.paths[2] = str(root / "good" / "g0_other_boxes.png")  # same bytes, no boxes: a conflict
    new, dropped = dedupe_index(idx, "drop")
    assert len(new) == 0 and {r["reason"] for r in dropped} == {"label conflict"}
    json.dumps(profile_index(idx))
