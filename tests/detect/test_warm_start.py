"""In-domain warm start: a tiny classification run's YOLOv8 backbone initialises a detector's backbone."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cls_run(synthetic_root, tmp_path_factory):
    """A classifier on the detector's backbone family (yolo_v8_tiny), 2 training steps."""
    from kdefect.config import load_config
    from kdefect.engine import fit

    cfg = load_config(overrides=[
        "name=warm", f"runs_dir={tmp_path_factory.mktemp('cls-runs')}", f"data.source={synthetic_root}",
        "data.image_size=[64,64]", "data.batch_size=8", "model.backbone=yolo_v8_tiny", "train.epochs=1",
        "train.steps_per_epoch=2", "trust.calibrate=false"])
    return fit(cfg, quiet=True)


def _detector(backbone: str = "yolo_v8_tiny"):
    from kdefect.models.detectors import build_detector

    return build_detector("yolov8", backbone, 4, (64, 64))


def _weights(model) -> dict[str, list[np.ndarray]]:
    from kdefect.tasks.warm_start import flat_layers

    return {layer.name: layer.get_weights() for layer in flat_layers(model) if layer.weights}


def test_detector_backbone_equals_the_classifier_after_load(cls_run):
    from kdefect.tasks.heads import load_model
    from kdefect.tasks.warm_start import load_backbone_weights

    det = _detector()
    before = _weights(det.backbone)
    res = load_backbone_weights(det.backbone, cls_run.path)
    assert res["matched_share"] == 1.0 and res["mismatches"] == [] and res["matched_layers"] == res["layers"]
    cls = _weights(load_model(cls_run.model_path))
    after = _weights(det.backbone)
    assert set(after) <= set(cls)
    for name, arrays in after.items():
        for a, b in zip(arrays, cls[name]):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before["stem_1_conv"], after["stem_1_conv"]))


def test_weights_file_loads_too(cls_run, tmp_path):
    from kdefect.errors import ConfigError
    from kdefect.tasks.heads import load_model
    from kdefect.tasks.warm_start import load_backbone_weights

    path, positional = tmp_path / "cls.h5", tmp_path / "cls.weights.h5"  # by layer name / Keras 3, by position
    load_model(cls_run.model_path).save_weights(str(path))
    load_model(cls_run.model_path).save_weights(str(positional))
    det = _detector()
    with pytest.raises(ConfigError, match="by position"):
        load_backbone_weights(det.backbone, positional)
    assert load_backbone_weights(det.backbone, path)["matched_share"] == 1.0
    np.testing.assert_array_equal(det.backbone.get_layer("stack4_c2f_pre_conv").get_weights()[0],
                                  load_model(cls_run.model_path).get_layer("stack4_c2f_pre_conv").get_weights()[0])


def test_a_partial_match_is_refused_and_names_the_mismatches(cls_run):
    from kdefect.errors import ConfigError
    from kdefect.tasks.warm_start import load_backbone_weights

    det = _detector("yolo_v8_n")  # twice as wide: the names match, the shapes do not
    before = _weights(det.backbone)
    with pytest.raises(ConfigError, match=r"only \d+% of the backbone's weights.*stem_1_conv \(shapes"):
        load_backbone_weights(det.backbone, cls_run.path)
    after = _weights(det.backbone)
    assert all(np.array_equal(a, b) for n in before for a, b in zip(before[n], after[n]))  # nothing loaded


def test_detector_fit_records_the_warm_start_with_ema_and_warmup(cls_run, det_voc_root, tmp_path):
    from kdefect import fit
    from kdefect.config import load_config

    cfg = load_config(overrides=[
        "task=detect", "name=warm-det", f"runs_dir={tmp_path}", f"data.source=voc:{det_voc_root}",
        "data.image_size=[64,64]", "data.batch_size=8", "detect.backbone=yolo_v8_tiny", "detect.jitter=[]",
        f"detect.backbone_weights={cls_run.path}", "train.epochs=2", "train.steps_per_epoch=1",
        "detect.ema=true", "detect.warmup_epochs=1", "trust.calibrate=false"])  # the tricks run in a real fit too
    run = fit(cfg, quiet=True)
    warm = run.read_json("metrics.json")["training"]["warm_start"]
    assert warm["matched_share"] == 1.0 and warm["source"].endswith("model.keras")


def test_a_classifier_that_trained_on_the_detectors_test_images_is_refused(tmp_path):
    """The warm start must not leak the detector's test images into its backbone (split lists compared by file)."""
    from kdefect.errors import ConfigError
    from kdefect.tasks.warm_start import check_held_out

    run = tmp_path / "cls"
    (run / "split").mkdir(parents=True)
    (run / "split" / "root.txt").write_text(f"{tmp_path}\n")
    (run / "split" / "train.txt").write_text("a.png\tgood\nb.png\tscratch\n")
    (run / "split" / "val.txt").write_text("c.png\tgood\n")
    (run / "split" / "test.txt").write_text("d.png\tgood\n")
    check_held_out(run, [str(tmp_path / "d.png"), str(tmp_path / "e.png")])  # the classifier's own test image: fine
    with pytest.raises(ConfigError, match=r"1 of this detector's 2 test images.*data\.split_from="):
        check_held_out(run, [str(tmp_path / "c.png"), str(tmp_path / "e.png")])
    check_held_out(tmp_path / "weights.h5", [str(tmp_path / "a.png")])  # a weights file has no split to check
