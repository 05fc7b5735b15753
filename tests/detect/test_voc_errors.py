"""Malformed VOC annotations get clear DataError messages (through kdefect.data.voc.parse_voc)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.data.voc import parse_voc
from kdefect.errors import DataError

CLASSES = ["scratch", "spot"]


def _voc(tmp_path, name, box, cls="scratch", with_image=True):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    if with_image:
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
    x = tmp_path / "annotations" / f"{name}.xml"
    x.write_text(f"<annotation><filename>{name}.png</filename><size><width>60</width><height>40</height></size>"
                 f"<object><name>{cls}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
                 f"<ymax>{box[3]}</ymax></bndbox></object></annotation>")
    return x


def test_valid_file_parses(tmp_path):
    rec = parse_voc(_voc(tmp_path, "ok", (1, 2, 30, 20)), CLASSES)
    assert rec.boxes.tolist() == [[1, 2, 30, 20]] and rec.labels == ["scratch"]


@pytest.mark.parametrize("name,box,cls,image,match", [
    ("outside", (10, 10, 90, 30), "scratch", True, r"outside\.xml.*lies outside the 60x40 image"),
    ("negative", (30, 10, 20, 30), "scratch", True, r"negative\.xml.*empty or negative box"),
    ("unknown", (1, 1, 10, 10), "dent", True, r"unknown\.xml.*unknown class 'dent'"),
    ("noimage", (1, 1, 10, 10), "scratch", False, r"noimage\.xml.*was not found"),
])
def test_malformed_voc_messages(tmp_path, name, box, cls, image, match):
    with pytest.raises(DataError, match=match):
        parse_voc(_voc(tmp_path, name, box, cls, image), CLASSES)


def _ann(tmp_path, name, body, size=(40, 60), real=(40, 60), image=True):
    """An annotation with raw ``body`` objects and a ``<size>`` (None: no <size>) over a real image of ``real``."""
    (tmp_path / "images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    if image is True:
        Image.fromarray(np.zeros((*real, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
    elif image:
        (tmp_path / "images" / f"{name}.png").write_bytes(image)
    sz = f"<size><width>{size[1]}</width><height>{size[0]}</height></size>" if size else ""
    x = tmp_path / "annotations" / f"{name}.xml"
    x.write_text(f"<annotation><filename>{name}.png</filename>{sz}{body}</annotation>")
    return x


def _obj(box):
    return (f"<object><name>scratch</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
            f"<ymax>{box[3]}</ymax></bndbox></object>")


@pytest.mark.parametrize("name,kwargs,match", [
    ("nanbox", dict(body=_obj(("nan", 1, 10, 10))), r"nanbox\.xml.*<xmin> .*not a number.*finite"),
    ("infsize", dict(body=_obj((1, 1, 10, 10)), size=("40", "inf")), r"infsize\.xml.*<width> .*not a number.*finite"),
    ("bigsize", dict(body=_obj((100, 100, 900, 900)), size=(1000, 1000), real=(64, 64)),
     r"bigsize\.xml.*lies outside the 64x64 image"),
    ("unreadable", dict(body=_obj((1, 1, 10, 10)), size=None, image=b"not an image"), r"unreadable\.xml.*cannot be read"),
])
def test_non_finite_and_inconsistent_annotations_are_bad_files(tmp_path, name, kwargs, match):
    with pytest.raises(DataError, match=match):
        parse_voc(_ann(tmp_path, name, **kwargs), CLASSES)


def test_real_image_size_wins_over_size_tag(tmp_path):
    rec = parse_voc(_ann(tmp_path, "wrong", _obj((1, 1, 60, 30)), size=(1000, 1000), real=(40, 60)), CLASSES)
    assert (rec.width, rec.height) == (60, 40)


def _bad_voc_root(tmp_path):
    root = tmp_path / "voc"
    for i in range(6):
        _ann(root, f"ok{i}", _obj((1, 1, 20, 20)) if i % 2 else "")
    _ann(root, "nanbox", _obj(("nan", 1, 10, 10)))
    _ann(root, "infsize", _obj((1, 1, 10, 10)), size=("40", "inf"))
    _ann(root, "bigsize", _obj((100, 100, 900, 900)), size=(1000, 1000), real=(64, 64))
    _ann(root, "unreadable", _obj((1, 1, 10, 10)), size=None, image=b"not an image")
    return root


def test_bad_voc_files_are_listed_with_fail(tmp_path):
    from kdefect.config import DataConfig
    from kdefect.data.sources import index_dataset

    with pytest.raises(DataError) as err:
        index_dataset(DataConfig(source=f"voc:{_bad_voc_root(tmp_path)}"))
    for name in ("nanbox.xml", "infsize.xml", "bigsize.xml", "unreadable.xml"):
        assert name in str(err.value)


def test_bad_voc_files_are_skipped_with_skip(tmp_path):
    from kdefect.config import DataConfig
    from kdefect.data.sources import index_dataset
    from kdefect.data.split import write_skipped

    idx = index_dataset(DataConfig(source=f"voc:{_bad_voc_root(tmp_path)}", on_bad_image="skip"))
    assert len(idx) == 6
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in idx.skipped) == ["bigsize.xml", "infsize.xml", "nanbox.xml",
                                                                     "unreadable.xml"]
    assert write_skipped(tmp_path, idx.skipped)
    assert "nanbox.xml" in (tmp_path / "skipped.csv").read_text()


def test_training_refuses_images_above_the_device_pixel_cap(tmp_path, monkeypatch):
    """One pixel cap everywhere: the device's MAX_PIXELS also gates training files (from the header)."""
    import kdefect.edge.preprocess as pre
    from kdefect.data.images import check_image

    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(p)
    assert check_image(p) is None
    monkeypatch.setattr(pre, "MAX_PIXELS", 60 * 40 - 1)
    assert "more than the 2399 pixels" in check_image(p)
