"""Indexing: folder formats/modes, VOC, synthetic, bad-input policy, subsampling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig, SyntheticConfig
from kdefect.data.sources import index_dataset, subsample_indices
from kdefect.errors import ConfigError, DataError


def _img(path, mode="RGB", size=(20, 16), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 120 if mode in ("L", "I;16") else (10, 200, 30, 128)[: len(mode)]).save(path, fmt)
    return path


@pytest.fixture
def mixed(tmp_path):
    root = tmp_path / "ds"
    _img(root / "good" / "a.jpg")
    _img(root / "good" / "b.PNG", "RGBA")
    _img(root / "good" / "sub" / "c.bmp", "L", (33, 7))
    _img(root / "scratch" / "d.tif", "L")
    _img(root / "scratch" / "e.TIFF")
    _img(root / "scratch" / "f.jpeg", size=(300, 200))
    _img(root / "scratch" / "g.jfif", fmt="JPEG")  # JPEG as Windows often names it
    (root / "scratch" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored
    (root / ".hidden").mkdir()
    # what operating systems and archivers leave beside images: neither bad images nor classes
    (root / "good" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "scratch" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "__MACOSX" / "good").mkdir(parents=True)
    (root / "__MACOSX" / "good" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / "System Volume Information").mkdir()
    return root


def _cfg(source, **kw):
    return DataConfig(source=str(source), **kw)


def test_folder_formats_and_modes(mixed):
    idx = index_dataset(_cfg(mixed))
    assert idx.classes == ["good", "scratch"]
    assert sorted(p.rsplit("/", 1)[-1] for p in idx.paths) == ["a.jpg", "b.PNG", "c.bmp", "d.tif", "e.TIFF", "f.jpeg",
                                                                   "g.jfif"]
    assert all(p.startswith(str(mixed.resolve())) for p in idx.paths)
    assert idx.labels.dtype.kind == "i" and np.bincount(idx.labels).tolist() == [3, 4]
    assert idx.skipped == [] and idx.boxes is None


def _corrupt(root):
    _img(root / "scratch" / "trunc.jpg", size=(64, 64))
    data = (root / "scratch" / "trunc.jpg").read_bytes()
    (root / "scratch" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (root / "good" / "garbage.png").write_bytes(b"\x89PNG not really")
    (root / "good" / "notes.txt").write_text("hello")
    return {"trunc.jpg", "garbage.png", "notes.txt"}


def test_bad_files_fail_lists_every_file(mixed):
    bad = _corrupt(mixed)
    with pytest.raises(DataError) as err:
        index_dataset(_cfg(mixed))
    msg = str(err.value)
    assert "3 bad input file" in msg and "--on-bad-image skip" in msg
    for name in bad:
        assert name in msg
    assert "not an image file" in msg and "truncated" in msg


def test_bad_files_skip_records_them(mixed):
    bad = _corrupt(mixed)
    idx = index_dataset(_cfg(mixed, on_bad_image="skip"))
    assert {p.rsplit("/", 1)[-1] for p, _ in idx.skipped} == bad
    assert all(reason for _, reason in idx.skipped)
    assert len(idx) == 7  # the 7 good files of the fixture


def test_empty_class_folder(mixed):
    (mixed / "crack").mkdir()
    with pytest.raises(DataError, match=r"'crack'.*no usable images"):
        index_dataset(_cfg(mixed))


def test_single_class(tmp_path):
    _img(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="only one class"):
        index_dataset(_cfg(tmp_path))


def test_an_archive_or_a_file_given_as_the_data_folder_says_what_it_is(tmp_path):
    import zipfile

    from kdefect.config import DataConfig
    from kdefect.data.sources import check_location

    archive = tmp_path / "parts.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good/a.png", b"")
    with pytest.raises(DataError, match=r"is an archive; kdefect reads folders\. Unpack it first \(python -m zipfile"):
        index_dataset(_cfg(archive))
    tarball = tmp_path / "parts.tar.gz"
    tarball.write_bytes(b"")
    with pytest.raises(DataError, match=r"tar -xf"):  # before TensorFlow loads, as the CLI checks
        check_location(DataConfig(source=str(tarball)))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"is a file, not a folder\. Pass a folder with one subfolder per class"):
        index_dataset(_cfg(tmp_path / "notes.txt"))


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        index_dataset(_cfg(tmp_path / "nope"))
    with pytest.raises(DataError, match="no class subfolders"):
        index_dataset(_cfg(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        index_dataset(_cfg(tmp_path))


def test_synthetic_source(monkeypatch, tmp_path):
    monkeypatch.setenv("KDEFECT_CACHE", str(tmp_path))
    syn = SyntheticConfig(classes=["good", "spot", "crack"], n_per_class=4, size=24)
    idx = index_dataset(DataConfig(synthetic=syn))
    assert idx.classes == ["good", "spot", "crack"]  # configured order kept
    assert all(f"/{idx.classes[lab]}_" in p for p, lab in zip(idx.paths, idx.labels))
    det = index_dataset(DataConfig(synthetic=syn), image_labels=False)
    assert det.classes == ["spot", "crack"]
    assert len(det) == 12 and len(det.boxes) == 12
    for p, b, bl, lab in zip(det.paths, det.boxes, det.box_labels, det.labels):
        if "/good_" in p:
            assert b.shape == (0, 4) and lab == -1
        else:
            assert len(b) == len(bl) >= 1 and det.classes[bl[0]] in p


def test_voc_source_classify_and_detect(synthetic_voc_root):
    idx = index_dataset(DataConfig(source=str(synthetic_voc_root)))  # format auto -> VOC
    assert idx.classes == ["crack", "patch", "scratch", "spot", "good"]
    assert all(f"/{idx.classes[lab]}_" in p for p, lab in zip(idx.paths, idx.labels))
    det = index_dataset(DataConfig(source=f"voc:{synthetic_voc_root}"), image_labels=False)
    assert det.classes == ["crack", "patch", "scratch", "spot"]
    assert sum(len(b) for b in det.boxes) >= 48


def test_voc_bad_entries(tmp_path, synthetic_voc_root):
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(synthetic_voc_root, root)
    (root / "images" / "spot_0.png").unlink()
    (root / "annotations" / "crack_1.xml").write_text("<annotation>")
    _img(root / "images" / "orphan.png")
    with pytest.raises(DataError) as err:
        index_dataset(DataConfig(source=str(root)))
    for name in ("spot_0.xml", "crack_1.xml", "orphan.png"):
        assert name in str(err.value)
    idx = index_dataset(DataConfig(source=str(root), on_bad_image="skip"))
    assert len(idx.skipped) == 3 and len(idx) == 58


def test_folder_source_cannot_detect(synthetic_root):
    with pytest.raises(DataError, match="no boxes"):
        index_dataset(DataConfig(source=str(synthetic_root)), image_labels=False)


def test_subsample_indices():
    labels = np.repeat([0, 1, 2], 100)
    keep = subsample_indices(labels, ["a", "b", "c"], {"b": 0.1}, seed=3)
    assert np.bincount(labels[keep]).tolist() == [100, 10, 100]
    np.testing.assert_array_equal(keep, subsample_indices(labels, ["a", "b", "c"], {"b": 0.1}, seed=3))
    assert not np.array_equal(keep, subsample_indices(labels, ["a", "b", "c"], {"b": 0.1}, seed=4))
    with pytest.raises(ConfigError, match="unknown"):
        subsample_indices(labels, ["a", "b", "c"], {"z": 0.5})
