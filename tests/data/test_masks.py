"""Segmentation masks beside a class folder's images are left out of the index, not learnt as parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.data.masks import split_masks
from kdefect.data.sources import index_dataset


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32), dtype=np.uint8)).save(path)


def _mask(path: Path, seed: int, empty: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((24, 32), np.uint8) if empty else (np.random.default_rng(seed).random((24, 32)) > 0.9) * 255
    Image.fromarray(m.astype(np.uint8)).save(path)


def _layout(root: Path) -> Path:
    """Three classes, three mask conventions, 12 photos each."""
    for i in range(12):
        _photo(root / "blowhole" / "Imgs" / f"exp{i}.jpg", i)  # Magnetic Tile: same stem, png mask
        _mask(root / "blowhole" / "Imgs" / f"exp{i}.png", i)
        _photo(root / "free" / "Imgs" / f"exp{i}.jpg", 100 + i)
        _mask(root / "free" / "Imgs" / f"exp{i}.png", 100 + i, empty=True)  # defect-free: an all-black mask
        _photo(root / "crack" / f"Part{i}.jpg", 200 + i)  # KolektorSDD: a _label suffix
        _mask(root / "crack" / f"Part{i}_label.bmp", 200 + i)
        _mask(root / "crack" / "Label" / f"Part{i}.png", 300 + i)  # DAGM-like mask folder
    return root


def test_masks_beside_images_are_left_out_with_a_warning(tmp_path, caplog):
    root = _layout(tmp_path / "ds")
    with caplog.at_level("WARNING"):
        idx = index_dataset(DataConfig(source=str(root)))
    assert len(idx) == 36 and np.bincount(idx.labels).tolist() == [12, 12, 12]
    assert all(Path(p).suffix == ".jpg" for p in idx.paths)  # every photo kept, no mask
    assert "24 segmentation mask(s) in class folder 'crack' left out" in caplog.text
    assert "12 segmentation mask(s) in class folder 'free' left out (e.g. Imgs/exp0.png)" in caplog.text


def test_photos_that_share_a_stem_or_look_like_mask_names_are_kept(tmp_path):
    d = tmp_path / "masks"  # a class folder named like a mask folder is still a class (rule 1 is below it)
    _photo(d / "a.jpg", 1)
    _photo(d / "a.png", 2)  # the same part twice, both real photos: neither has two grey levels
    _photo(d / "b_gt.png", 3)  # a mask suffix, but no image 'b' beside it
    _mask(d / "c.png", 4)  # a binary image alone: it may be a real (thresholded) image
    files = sorted(d.iterdir())
    images, masks = split_masks(files, d)
    assert masks == [] and images == files


@pytest.mark.parametrize("name", ["x_mask.png", "x-GT.png", "x_Segmentation.tif", "x_seg.bmp"])
def test_mask_suffixes_in_any_case(tmp_path, name):
    _photo(tmp_path / "x.jpg", 0)
    _photo(tmp_path / name, 1)  # the suffix decides, whatever the pixels
    images, masks = split_masks(sorted(tmp_path.iterdir()), tmp_path)
    assert [m.name for m in masks] == [name] and [i.name for i in images] == ["x.jpg"]


def test_a_class_folder_of_masks_is_left_out(tmp_path, caplog):
    root = tmp_path / "aitex"
    for i in range(6):
        _photo(root / "Defect_images" / f"{i}.png", i)
        _photo(root / "NODefect_images" / f"{i}.png", 10 + i)
        _mask(root / "Mask_images" / f"{i}_mask.png", i)
    with caplog.at_level("WARNING"):
        idx = index_dataset(DataConfig(source=str(root)))
    assert idx.classes == ["Defect_images", "NODefect_images"] and len(idx) == 12
    assert "'Mask_images/'" in caplog.text and "not a class: left out" in caplog.text


def test_a_mask_named_class_of_real_images_stays_a_class(tmp_path):
    root = tmp_path / "ds"
    for i in range(6):
        _photo(root / "good" / f"{i}.png", i)
        _photo(root / "mask_print_defect" / f"{i}.png", 10 + i)  # a defect class whose name says "mask"
    assert index_dataset(DataConfig(source=str(root))).classes == ["good", "mask_print_defect"]


def test_classes_one_level_down_are_warned_about(tmp_path, caplog):
    root = tmp_path / "sdnet"
    for k, (surface, cls) in enumerate([("D", "CD"), ("D", "UD"), ("P", "CP"), ("P", "UP")]):
        for i in range(3):
            _photo(root / surface / cls / f"{i}.jpg", 10 * k + i)
    with caplog.at_level("WARNING"):
        idx = index_dataset(DataConfig(source=str(root)))
    assert idx.classes == ["D", "P"]  # read as asked, but not silently
    assert "class folder 'D' holds no images itself, only the folders CD/, UD/" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert index_dataset(DataConfig(source=str(root / "D"))).classes == ["CD", "UD"]  # as the warning says
    assert "holds no images itself" not in caplog.text
