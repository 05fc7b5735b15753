"""A detector trains from a YOLO export (Roboflow layout, already split) as from VOC, keeping the given split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def _to_yolo(voc_root: Path, out: Path) -> Path:
    """The synthetic VOC set rewritten as a Roboflow YOLO export: train/ valid/ test/ with images/ + labels/."""
    from PIL import Image

    from kdefect.config import DataConfig
    from kdefect.data.sources import index_dataset

    idx = index_dataset(DataConfig(source=f"voc:{voc_root}"), image_labels=False)
    for i, (path, boxes, labels) in enumerate(zip(idx.paths, idx.boxes, idx.box_labels)):
        part = ("train", "train", "train", "valid", "test")[i % 5]
        (out / part / "images").mkdir(parents=True, exist_ok=True)
        (out / part / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / part / "images" / Path(path).name)
        with Image.open(path) as im:
            w, h = im.size
        lines = [f"{c} {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} {(b[3] - b[1]) / h}"
                 for b, c in zip(boxes, labels)]
        (out / part / "labels" / f"{Path(path).stem}.txt").write_text("\n".join(lines))
    (out / "data.yaml").write_text("names: [" + ", ".join(idx.classes) + "]\n")
    return out


def test_detector_fits_on_a_yolo_export_and_keeps_its_test_split(det_voc_root, tmp_path, train_step_traces):
    from kdefect import fit
    from kdefect.config import load_config
    from kdefect.data.split import load_split
    from kdefect.keras import keras_cv
    from kdefect.tasks.detect_infer import split_arrays

    root = _to_yolo(det_voc_root, tmp_path / "yolo")
    cfg = load_config(overrides=[
        "task=detect", "name=yolo-src", f"runs_dir={tmp_path / 'runs'}", f"data.source={root}",
        "data.image_size=[64,64]", "data.batch_size=8", "detect.backbone=yolo_v8_tiny", "detect.jitter=[]",
        "train.epochs=1", "train.steps_per_epoch=2", "trust.calibrate=false"])
    traces = train_step_traces(keras_cv().models.YOLOV8Detector)
    run = fit(cfg, quiet=True)
    assert len(traces) == 1  # the optimizer and loss trackers exist before the first step (models.compiled)
    tests = load_split(run.path)["test"][0]
    assert tests and {Path(p).parent.parent.name for p in tests} == {"test"}
    assert len(tests) == len(list((root / "test" / "images").iterdir()))
    assert "split_folders: keep" in run.config_path.read_text()
    assert np.isfinite(run.read_json("metrics.json")["map50"])

    arrays, classes = split_arrays(run.config(), run, str(root))  # evaluate --data on the export: its test/ only
    assert len(arrays.sizes) == len(tests) and classes == run.read_json("metrics.json")["classes"]
