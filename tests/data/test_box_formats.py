"""Box data sets as users bring them: Pascal VOC layouts, YOLO text labels, COCO JSON; all index alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.data.sources import index_dataset, resolve_source
from kdefect.data.split import split_index
from kdefect.data.voc import voc_xml
from kdefect.errors import DataError

CLASSES = ["crack", "spot"]
# (file name, (w, h), [(class, x0, y0, x1, y1), ...]); the last image has no defect
IMAGES = [
    ("a.png", (40, 30), [("crack", 2, 3, 20, 9)]),
    ("b.png", (40, 30), [("spot", 10, 10, 16, 18), ("crack", 0, 0, 40, 6)]),
    ("c.png", (32, 48), [("spot", 4, 30, 12, 44)]),
    ("d.png", (32, 48), []),
]


def _write_images(folder: Path, items=IMAGES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (w, h), _) in enumerate(items):
        Image.fromarray(np.full((h, w), 20 * i + 10, np.uint8)).save(folder / name)


def _yolo_lines(w: int, h: int, objs) -> str:
    return "".join(f"{CLASSES.index(c)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} "
                   f"{(y1 - y0) / h:.6f}\n" for c, x0, y0, x1, y1 in objs)


def write_voc(root: Path, ann="annotations", img="images", items=IMAGES) -> Path:
    _write_images(root / img, items)
    (root / ann).mkdir(parents=True, exist_ok=True)
    for name, (w, h), objs in items:
        boxes = np.asarray([o[1:] for o in objs], np.float32).reshape(-1, 4)
        (root / ann / f"{Path(name).stem}.xml").write_text(voc_xml(name, w, h, boxes, [o[0] for o in objs]))
    return root


def write_yolo(root: Path, items=IMAGES, sub="") -> Path:
    _write_images(root / sub / "images", items)
    (root / sub / "labels").mkdir(parents=True, exist_ok=True)
    for name, (w, h), objs in items:
        if objs:  # the defect-free image has no label file (Ultralytics: background)
            (root / sub / "labels" / f"{Path(name).stem}.txt").write_text(_yolo_lines(w, h, objs))
    (root / "data.yaml").write_text("names: {0: crack, 1: spot}\n")
    return root


def _coco_json(items, first_id=0) -> dict:
    cats = [{"id": 0, "name": "defects", "supercategory": "none"}]  # Roboflow's placeholder: no boxes
    cats += [{"id": i + 1, "name": c, "supercategory": "defects"} for i, c in enumerate(CLASSES)]
    images, anns = [], []
    for i, (name, (w, h), objs) in enumerate(items):
        images.append({"id": first_id + i, "file_name": name, "width": w, "height": h})
        anns += [{"id": len(anns), "image_id": first_id + i, "category_id": CLASSES.index(c) + 1,
                  "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0} for c, x0, y0, x1, y1 in objs]
    return {"images": images, "annotations": anns, "categories": cats}


def write_coco(root: Path, items=IMAGES) -> Path:
    _write_images(root / "images", items)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_all.json").write_text(json.dumps(_coco_json(items)))
    return root


def _boxes(idx) -> dict[str, list]:
    return {Path(p).name: sorted((idx.classes[int(c)], *np.round(b, 2).tolist()) for b, c in zip(bx, lb))
            for p, bx, lb in zip(idx.paths, idx.boxes, idx.box_labels)}


@pytest.mark.parametrize("kind", ["yolo", "coco", "pascal"])
def test_every_box_format_indexes_like_voc(tmp_path, kind):
    ref = index_dataset(DataConfig(source=str(write_voc(tmp_path / "voc"))), image_labels=False)
    root = {"yolo": lambda: write_yolo(tmp_path / "y"), "coco": lambda: write_coco(tmp_path / "c"),
            "pascal": lambda: write_voc(tmp_path / "p", "Annotations", "JPEGImages")}[kind]()
    cfg = DataConfig(source=str(root))
    assert resolve_source(cfg)[0] == ("voc" if kind == "pascal" else kind)  # found without a prefix
    idx = index_dataset(cfg, image_labels=False)
    assert idx.classes == ref.classes == CLASSES
    got, want = _boxes(idx), _boxes(ref)
    assert got.keys() == want.keys() and len(got) == 4  # the defect-free image is kept, with no boxes
    for name in want:
        assert len(got[name]) == len(want[name])
        for g, w in zip(got[name], want[name]):
            assert g[0] == w[0] and np.allclose(g[1:], w[1:], atol=0.01), (name, g, w)
    labels = index_dataset(cfg)  # classification from boxes: the largest box's class, defect-free -> good
    assert labels.classes == ["crack", "spot", "good"]
    assert dict(zip((Path(p).name for p in labels.paths), labels.labels.tolist())) == {"a.png": 0, "b.png": 0,
                                                                                        "c.png": 1, "d.png": 2}


def test_yolo_polygons_become_boxes_and_bad_lines_name_the_file(tmp_path):
    root = write_yolo(tmp_path / "y")
    (root / "labels" / "c.txt").write_text("1 0.125 0.625 0.375 0.625 0.375 0.916667 0.125 0.916667\n")  # polygon
    idx = index_dataset(DataConfig(source=f"yolo:{root}"), image_labels=False)
    i = [Path(p).name for p in idx.paths].index("c.png")
    np.testing.assert_allclose(idx.boxes[i], [[4, 30, 12, 44]], atol=0.01)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "b.txt").write_text("0 12 9 20 6\n")  # pixels, not normalised
    with pytest.raises(DataError) as err:
        index_dataset(DataConfig(source=f"yolo:{root}"), image_labels=False)
    msg = str(err.value)
    assert "a.txt' line 2: class id 7" in msg and "b.txt' line 1" in msg and "normalised" in msg
    skipped = index_dataset(DataConfig(source=f"yolo:{root}", on_bad_image="skip"), image_labels=False)
    assert len(skipped) == 2 and len(skipped.skipped) == 2


def test_yolo_needs_class_names(tmp_path):
    root = write_yolo(tmp_path / "y")
    (root / "data.yaml").unlink()
    with pytest.raises(DataError, match="no class names.*data.yaml"):
        index_dataset(DataConfig(source=f"yolo:{root}"), image_labels=False)
    (root / "classes.txt").write_text("crack\nspot\n")
    assert index_dataset(DataConfig(source=str(root)), image_labels=False).classes == CLASSES


def test_split_exports_keep_their_split(tmp_path):
    # Roboflow: train/ valid/ test/, each with images + labels (YOLO) or one _annotations.coco.json (COCO)
    y, c = tmp_path / "y", tmp_path / "c"
    parts = {"train": IMAGES, "valid": IMAGES[:2], "test": IMAGES[2:]}
    for sub, items in parts.items():
        items = [(f"{sub}_{n}", s, o) for n, s, o in items]
        write_yolo(y, items, sub)
        _write_images(c / sub, items)
        (c / sub / "_annotations.coco.json").write_text(json.dumps(_coco_json(items)))
    for root in (y, c):
        idx = index_dataset(DataConfig(source=str(root)), image_labels=False)
        split, value, _ = split_index(idx, DataConfig(source=str(root)))
        assert value == "keep"
        assert {s: sorted(Path(idx.paths[i]).name.split("_")[0] for i in v) for s, v in split.items()} == {
            "train": ["train"] * 4, "val": ["valid"] * 2, "test": ["test"] * 2}


def test_voc_images_anywhere_below_the_root(tmp_path):
    # GC10-DET: images in per-class folders, XML in 'lable/'; found with an explicit voc: prefix
    root = tmp_path / "gc10"
    for name, size, objs in IMAGES:
        _write_images(root / "images" / (objs[0][0] if objs else "none"), [(name, size, objs)])
    write_voc(tmp_path / "tmp", "lable", "unused")
    (tmp_path / "tmp" / "lable").rename(root / "lable")
    idx = index_dataset(DataConfig(source=f"voc:{root}"), image_labels=False)
    assert sorted(Path(p).name for p in idx.paths) == ["a.png", "b.png", "c.png", "d.png"]
    Image.new("L", (40, 30)).save(root / "images" / "spot" / "a.png")  # a second a.png: ambiguous
    with pytest.raises(DataError, match="'a.png' matches 2 files"):
        index_dataset(DataConfig(source=f"voc:{root}"), image_labels=False)


def test_coco_errors_name_the_file(tmp_path):
    root = write_coco(tmp_path / "c")
    data = json.loads((root / "annotations" / "instances_all.json").read_text())
    data["annotations"][0]["category_id"] = 99
    data["images"][3]["file_name"] = "missing.png"
    (root / "annotations" / "instances_all.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        index_dataset(DataConfig(source=f"coco:{root}"), image_labels=False)
    assert "category_id 99" in str(err.value) and "missing.png" in str(err.value)
    (root / "annotations" / "instances_all.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as COCO JSON"):
        index_dataset(DataConfig(source=f"coco:{root / 'annotations' / 'instances_all.json'}"), image_labels=False)


def test_voc_split_into_folders_keeps_its_split(tmp_path):
    # NEU-DET as Kaggle ships it: train/ and validation/, each with annotations/ and images/<class>/
    root = tmp_path / "NEU-DET"
    for sub, items in (("train", IMAGES), ("validation", IMAGES[:2])):
        items = [(f"{sub}_{n}", s, o) for n, s, o in items]
        write_voc(root / sub, items=items)
        for name, _, objs in items:  # images into per-class folders, found by their unique names
            cls = objs[0][0] if objs else "none"
            (root / sub / "images" / cls).mkdir(exist_ok=True)
            (root / sub / "images" / name).rename(root / sub / "images" / cls / name)
    cfg = DataConfig(source=str(root))
    assert resolve_source(cfg)[0] == "voc"
    idx = index_dataset(cfg, image_labels=False)
    assert len(idx) == 6 and sorted(set(idx.split_names)) == ["train", "val"]
    split, value, why = split_index(idx, cfg)
    assert value == "keep" and "test/ carved from train/" in why
    assert {Path(idx.paths[i]).name.split("_")[0] for i in split["val"]} == {"validation"}


def test_the_profile_records_box_sizes(tmp_path):
    from kdefect.data.profile import format_profile, profile_index

    idx = index_dataset(DataConfig(source=str(write_voc(tmp_path / "voc"))), image_labels=False)
    prof = profile_index(idx)
    assert prof["boxes"]["n"] == 4
    assert prof["boxes"]["min_side_px"]["min"] == 6  # a.png's 18 x 6 crack
    assert prof["boxes"]["min_side_share"]["min"] == pytest.approx(6 / 40)  # b.png's 40 x 6 crack on a 40 x 30 image
    assert "boxes: 4, smaller side p10" in format_profile(prof)


def test_a_detection_class_seen_only_as_a_secondary_box_in_train_is_not_missing(tmp_path):
    root = tmp_path / "y"
    write_yolo(root, [(f"train_{n}", s, o) for n, s, o in IMAGES[:2]], "train")  # spot only beside a larger crack
    write_yolo(root, [(f"test_{n}", s, o) for n, s, o in IMAGES[2:]], "test")
    idx = index_dataset(DataConfig(source=str(root)), image_labels=False)
    _, value, _ = split_index(idx, DataConfig(source=str(root)))
    assert value == "keep"  # the detector learns 'spot' from its boxes in train/, dominant or not
