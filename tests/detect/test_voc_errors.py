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
