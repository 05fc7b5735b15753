"""Flat folders whose file names carry the class (NEU-CLS: Cr_1.bmp ... Sc_300.bmp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.data.name_labels import class_of, looks_named
from kdefect.data.sources import index_dataset, resolve_source
from kdefect.errors import DataError


def _flat(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.fromarray(np.full((10, 10), i % 256, np.uint8)).save(root / n)
    return root


@pytest.mark.parametrize("name,cls", [("Cr_1.bmp", "Cr"), ("PS_300.bmp", "PS"), ("crazing_12.jpg", "crazing"),
                                      ("rolled-in_scale_3.jpg", "rolled-in_scale"), ("scratch (3).png", "scratch"),
                                      ("img001.png", "img"), ("exp1_num_4727.jpg", "exp1_num"), ("good.png", None),
                                      ("0001.png", None)])
def test_class_of_a_file_name(name, cls):
    assert class_of(name) == cls


def test_a_flat_named_folder_is_read_by_its_names(tmp_path):
    root = _flat(tmp_path / "neu_cls", [f"{c}_{i}.bmp" for c in ("Cr", "In", "Sc") for i in range(1, 5)])
    assert resolve_source(DataConfig(source=str(root)))[0] == "names"
    idx = index_dataset(DataConfig(source=str(root)))
    assert idx.classes == ["Cr", "In", "Sc"] and np.bincount(idx.labels).tolist() == [4, 4, 4]
    assert all(Path(p).name.startswith(idx.classes[k]) for p, k in zip(idx.paths, idx.labels, strict=True))


def test_camera_file_names_are_not_taken_for_classes(tmp_path):
    root = _flat(tmp_path / "cam", [f"IMG_2024010{i}_1200{i}.jpg" for i in range(6)])  # each 'class' once
    assert not looks_named(root)
    with pytest.raises(DataError, match=r"no class subfolders \(6 images lie directly in it\).*names:"):
        index_dataset(DataConfig(source=str(root)))


def test_a_name_without_a_number_follows_the_bad_input_policy(tmp_path):
    root = _flat(tmp_path / "d", ["a_1.png", "a_2.png", "b_1.png", "b_2.png", "notes.png"])
    with pytest.raises(DataError, match="notes.png.*does not end in a number"):
        index_dataset(DataConfig(source=f"names:{root}"))
    idx = index_dataset(DataConfig(source=f"names:{root}", on_bad_image="skip"))
    assert idx.classes == ["a", "b"] and len(idx) == 4 and len(idx.skipped) == 1


def test_class_named_files_in_split_folders_keep_their_split(tmp_path):
    from kdefect.data.profile import dedupe_index
    from kdefect.data.split import split_index

    root = tmp_path / "d"
    _flat(root / "train", [f"{c}_{i}.bmp" for c in ("Cr", "Sc") for i in range(1, 7)])
    _flat(root / "test", [f"{c}_{i}.bmp" for c in ("Cr", "Sc") for i in range(7, 9)])
    for k, f in enumerate(sorted((root / "test").iterdir())):  # distinct bytes from the training images
        Image.fromarray(np.full((10, 10), 200 + k, np.uint8)).save(f)
    assert resolve_source(DataConfig(source=str(root)))[0] == "names"
    idx, _ = dedupe_index(index_dataset(DataConfig(source=str(root))), "drop")
    assert idx.classes == ["Cr", "Sc"] and sorted(set(idx.split_names)) == ["test", "train"]
    split, mode, _ = split_index(idx, DataConfig(source=str(root)))
    assert mode == "keep" and sorted(Path(idx.paths[i]).name for i in split["test"]) == [
        "Cr_7.bmp", "Cr_8.bmp", "Sc_7.bmp", "Sc_8.bmp"]
    Image.fromarray(np.full((10, 10), 250, np.uint8)).save(root / "Cr_99.bmp")  # beside the split folders
    assert len(index_dataset(DataConfig(source=f"names:{root}"))) == len(idx)  # left out, with a warning


def test_split_folders_of_loose_images_are_never_classes(tmp_path):
    root = tmp_path / "d"
    _flat(root / "train", [f"IMG_{i:04d}_{i}.png" for i in range(6)])  # names that carry no class
    _flat(root / "test", [f"IMG_{i:04d}_{i}.png" for i in range(6, 9)])
    with pytest.raises(DataError, match=r"only split folders \(test/, train/\).*learn train against test"):
        index_dataset(DataConfig(source=str(root)))
