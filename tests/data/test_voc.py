"""VOC parsing: the happy path and each malformed case names the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.data.voc import VocRecord, image_label, parse_voc, voc_xml
from kdefect.errors import DataError


def _voc(tmp_path, xml: str, stem: str = "a", make_image: bool = True):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    if make_image:
        Image.new("RGB", (40, 30)).save(tmp_path / "images" / f"{stem}.jpg")
    p = tmp_path / "annotations" / f"{stem}.xml"
    p.write_text(xml)
    return p


def _obj(name, x0, y0, x1, y1):
    return (f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>")


def _ann(*objs, filename="a.jpg"):
    return (f"<annotation><folder>junk</folder><filename>{filename}</filename><size><width>40</width>"
            f"<height>30</height><depth>1</depth></size>{''.join(objs)}</annotation>")


def test_parse_ok_and_clip(tmp_path):
    p = _voc(tmp_path, _ann(_obj("scratch", 1, 2, 10, 12), _obj("spot", -0.5, 0, 40.8, 30)))
    r = parse_voc(p, ["scratch", "spot"])
    assert r.image_path == tmp_path / "images" / "a.jpg"
    assert (r.width, r.height) == (40, 30)
    assert r.labels == ["scratch", "spot"]
    assert r.boxes.dtype == np.float32
    np.testing.assert_allclose(r.boxes, [[1, 2, 10, 12], [0, 0, 40, 30]])  # 1 px tolerance, then clipped


def test_filename_without_extension(tmp_path):
    p = _voc(tmp_path, _ann(_obj("x", 1, 1, 5, 5), filename="a"))  # NEU writes some names like this
    assert parse_voc(p).image_path.name == "a.jpg"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (_ann(_obj("scratch", 1, 1, 50, 10)), "outside"),
        (_ann(_obj("scratch", 10, 1, 5, 10)), "empty or negative"),
        (_ann(_obj("scratch", 1, 10, 5, 10)), "empty or negative"),
        (_ann(_obj("dent", 1, 1, 5, 5)), "unknown class 'dent'"),
        ("<annotation><filename>a.jpg</filename", "not valid XML"),
        (_ann(_obj("scratch", 1, "x", 5, 5)), "not a number"),
        ("<annotation><filename>a.jpg</filename><object><name>scratch</name></object></annotation>", "bndbox"),
    ],
)
def test_malformed_cases_name_the_file(tmp_path, xml, message):
    p = _voc(tmp_path, xml)
    with pytest.raises(DataError, match=message) as err:
        parse_voc(p, ["scratch"])
    assert str(p) in str(err.value)


def test_missing_image(tmp_path):
    p = _voc(tmp_path, _ann(_obj("x", 1, 1, 5, 5), filename="gone.jpg"), stem="gone", make_image=False)
    with pytest.raises(DataError, match="not found") as err:
        parse_voc(p)
    assert "gone.xml" in str(err.value)


def test_xml_bomb_is_rejected(tmp_path):
    bomb = '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><annotation>&b;</annotation>'
    with pytest.raises(DataError, match="not valid XML"):
        parse_voc(_voc(tmp_path, bomb))


def _rec(boxes, labels):
    return VocRecord(__import__("pathlib").Path("r.xml"), __import__("pathlib").Path("r.jpg"), 100, 100,
                     np.asarray(boxes, np.float32).reshape(-1, 4), labels)


def test_label_rules():
    r = _rec([[0, 0, 10, 10], [0, 0, 5, 5], [0, 0, 50, 50]], ["a", "a", "b"])
    assert image_label(r, "largest_area") == "b"
    assert image_label(r, "most_boxes") == "a"
    assert image_label(r, "first") == "a"
    empty = _rec([], [])
    assert image_label(empty, "largest_area", ["good", "a"]) == "good"
    with pytest.raises(DataError, match="no objects"):
        image_label(empty, "largest_area", ["a", "b"])
    with pytest.raises(DataError, match="unknown"):
        image_label(r, "biggest")


def test_voc_xml_roundtrip(tmp_path):
    p = _voc(tmp_path, voc_xml("a.jpg", 40, 30, np.array([[1, 2, 3, 4]]), ["s&p"]))
    r = parse_voc(p)
    assert r.labels == ["s&p"] and r.boxes.tolist() == [[1, 2, 3, 4]]
