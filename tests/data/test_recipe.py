"""The `auto` rules on hand-built profiles: each choice, and its reason, follows the data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.config import load_config
from kdefect.data.recipe import resolve_auto


def _profile(ratio=1.0, short=200, long_=200, p10=1.0, p90=1.0, classes=("good", "scratch")):
    stat = lambda v: {"median": v, "p10": v, "p90": v}
    return {"imbalance_ratio": ratio, "classes": list(classes),
            "geometry": {"short_side": stat(short), "long_side": stat(long_),
                         "aspect": {"p10": p10, "p90": p90, "median": (p10 + p90) / 2}}}


def test_balanced_square_data_keeps_plain_settings():
    cfg = load_config()
    choices = {c.key: c for c in resolve_auto(cfg, _profile(short=64, long_=64))}
    assert cfg.data.sampling == "shuffle" and cfg.data.resize == "squash" and cfg.data.image_size == [64, 64]
    assert cfg.train.monitor == "val_frr_at_escape"
    assert "imbalance 1.0:1" in choices["data.sampling"].reason


def test_dominant_good_class_and_elongated_parts():
    cfg = load_config()
    choices = {c.key: c for c in resolve_auto(cfg, _profile(ratio=30, short=150, long_=600, p10=1.1, p90=4.0))}
    assert cfg.data.sampling == "balanced" and "30.0:1" in str(choices["data.sampling"])
    assert cfg.data.resize == "squash" and "letterbox lost to squashing" in str(choices["data.resize"])
    assert cfg.data.image_size == [128, 128]  # short side 150, capped by data.max_auto_size


def test_elongated_parts_are_squashed_even_when_they_fit_and_a_set_letterbox_sizes_by_the_long_side():
    cfg = load_config()
    resolve_auto(cfg, _profile(short=40, long_=100, p10=1.1, p90=3.0))
    # the long side (100 px, rounded down to 96): squashed to the short side (32 px) these parts lost to 64 px
    assert cfg.data.resize == "squash" and cfg.data.image_size == [96, 96]
    cfg = load_config(None, ["data.resize=letterbox"])  # chosen by hand: kept, and the canvas holds the long side
    choices = {c.key: c for c in resolve_auto(cfg, _profile(short=40, long_=100, p10=1.1, p90=3.0))}
    assert "data.resize" not in choices and cfg.data.resize == "letterbox" and cfg.data.image_size == [96, 96]


def test_explicit_settings_are_never_overridden_and_no_good_class_monitors_recall():
    cfg = load_config(None, ["data.image_size=[96, 80]", "data.sampling=shuffle", "data.good_label=null"])
    keys = [c.key for c in resolve_auto(cfg, _profile(ratio=30, short=300, classes=("a", "b")))]
    assert "data.sampling" not in keys and "data.image_size" not in keys
    assert cfg.data.image_size == [96, 80] and cfg.data.sampling == "shuffle"
    assert cfg.train.monitor == "val_macro_recall"


def test_image_size_rounds_down_to_32_and_respects_the_cap():
    cfg = load_config(None, ["data.max_auto_size=256"])
    resolve_auto(cfg, _profile(short=200, long_=200))
    assert cfg.data.image_size == [192, 192]
    cfg = load_config()
    resolve_auto(cfg, _profile(short=20, long_=20))
    assert cfg.data.image_size == [32, 32]


def test_detection_profile_keeps_every_image_and_monitors_the_loss():
    """The rules read the label kind from the profile (``image_labels``), never the task's name."""
    cfg = load_config()
    profile = {**_profile(ratio=30, short=150, long_=600, p10=1.1, p90=4.0), "image_labels": False}
    choices = {c.key: c for c in resolve_auto(cfg, profile)}
    assert cfg.data.sampling == "balanced" and "rare classes drawn more often" in choices["data.sampling"].reason
    assert cfg.data.resize == "squash" and choices["data.resize"].reason.endswith("detection")
    assert cfg.train.monitor == "val_loss"
    cfg = load_config()  # NEU-DET: 300 images per class
    resolve_auto(cfg, {**_profile(ratio=1.0), "image_labels": False})
    assert cfg.data.sampling == "shuffle"


def _det_profile(share: float) -> dict:
    p = _profile(short=600, long_=600)
    p["image_labels"] = False
    p["boxes"] = {"n": 100, "min_side_share": {"p10": share, "median": 2 * share}}
    return p


def test_detection_sizes_the_input_for_its_smallest_boxes():
    from kdefect.data.recipe import small_box_warning

    for share, side in ((0.085, 128), (0.03, 288), (0.005, 512)):  # NEU-DET-like, mid, PCB-like (capped)
        cfg = load_config(None, ["task=detect"])
        choice = {c.key: c for c in resolve_auto(cfg, _det_profile(share))}["data.image_size"]
        assert cfg.data.image_size == [side, side], share
        assert ("capped at 512" in choice.reason) == (share == 0.005)
    cfg = load_config(None, ["task=detect", "data.max_auto_size=256"])  # the cap follows data.max_auto_size
    resolve_auto(cfg, _det_profile(0.001))
    assert cfg.data.image_size == [1024, 1024]
    assert small_box_warning(_det_profile(0.085), [256, 256]) is None  # NEU-DET at 256 px
    warn = small_box_warning(_det_profile(0.01), [256, 256])
    assert "under 2.6 px" in warn and "[800, 800]" in warn
    assert small_box_warning(_profile(), [64, 64]) is None  # classification profiles have no boxes


def test_few_images_are_named_with_what_their_recall_can_prove():
    from kdefect.data.recipe import few_images_warning

    def prof(train, test):
        return {"classes": ["good", "rare"], "split_counts": {
            "train": {"good": 100, "rare": train}, "val": {"good": 30, "rare": 2}, "test": {"good": 30, "rare": test}}}

    assert few_images_warning(prof(40, 12)) is None
    warn = few_images_warning(prof(3, 1))
    assert "'rare' 3 train / 2 val / 1 test" in warn and "'good'" not in warn
    assert "1 of 1 found would have a 95% lower bound of 2.5%" in warn
    assert "not measured at all" in few_images_warning(prof(30, 0))
    assert "'rare' 12 train" in few_images_warning(prof(12, 20))  # enough to judge, too few to learn
    assert few_images_warning({"classes": ["a"]}) is None  # no split yet: nothing to say


def test_a_defect_free_looking_class_is_named_when_good_label_misses():
    from kdefect.data.recipe import good_label_problem

    for classes, likely in [(["MT_Blowhole", "MT_Free"], "MT_Free"), (["Defect_images", "NODefect_images"],
                            "NODefect_images"), (["def_front", "ok_front"], "ok_front"), (["crack", "Normal"], "Normal"),
                            (["non_defective", "defective"], "non_defective"), (["Good", "scratch"], "Good")]:
        problem = good_label_problem(classes, "good")
        assert f"Set data.good_label={likely} " in problem and "no escape rate" in problem, classes
    assert "Set data.good_label=Accepted_Parts " in good_label_problem(["Accepted_Parts", "dent"], "accepted parts")
    assert good_label_problem(["crazing", "inclusion"], "good") is None  # NEU: no class is defect-free
    assert good_label_problem(["not_good", "not_ok", "goods_damaged"], "good") is None
    assert good_label_problem(["ok", "scratch"], "ok") is None  # set right
    assert good_label_problem(["ok", "scratch"], None) is None  # null: the user said there is none


def test_fit_and_cv_stop_before_training_when_good_label_misses_the_good_class(tmp_path):
    from click.testing import CliRunner

    from kdefect.cli import main
    from kdefect.config import load_config
    from kdefect.engine.trainer import plan_run
    from kdefect.errors import DataError
    from kdefect.trust.cv import cross_validate

    for cls in ("OK", "scratch"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((16, 16), i * 9 + (cls == "OK") * 100, np.uint8)).save(tmp_path / "ds" / cls / f"{i}.png")
    over = [f"runs_dir={tmp_path / 'runs'}", f"data.source={tmp_path / 'ds'}", "data.batch_size=4"]
    cfg = load_config(None, over)  # data.good_label defaults to 'good'
    with pytest.raises(DataError, match="Set data.good_label=OK "):
        plan_run(cfg)
    with pytest.raises(DataError, match="Set data.good_label=OK "):
        cross_validate(cfg, folds=2, fit_fn=lambda *a, **k: pytest.fail("trained"))
    assert not (tmp_path / "runs").exists()  # no run folder, no fold folder
    r = CliRunner().invoke(main, ["data", "check", str(tmp_path / "ds")])
    assert r.exit_code != 0 and "Set data.good_label=OK" in r.output
    assert plan_run(load_config(None, [*over, "data.good_label=null"])).index.classes == ["OK", "scratch"]


def test_retinanet_anchors_that_reach_too_few_boxes_of_a_class_are_named():
    """An 8:1 scratch reaches no default (1:2..2:1) anchor at IoU 0.5, so RetinaNet would never learn it; longer
    anchors cover it, and YOLOv8 (anchor-free) is never warned about."""
    import numpy as np

    from kdefect.data.recipe import anchor_warning

    boxes = [np.array([[64, 148, 256, 172]], np.float32), np.array([[24, 24, 280, 280]], np.float32)]
    labels, sizes = [np.array([0]), np.array([1])], [(320, 320), (320, 320)]  # squashed to 160 px: halved

    def warn(*overrides):
        cfg = load_config(None, ["task=detect", "detect.architecture=retinanet", *overrides])
        return anchor_warning(cfg.detect, [160, 160], boxes, labels, sizes, ["scratch", "patch"])

    msg = warn()
    assert msg and "scratch 0%" in msg and "patch" not in msg and "anchor_aspect_ratios" in msg
    assert warn("detect.anchor_aspect_ratios=[0.25,0.5,1,2,4]") is None
    assert anchor_warning(load_config(None, ["task=detect"]).detect, [160, 160], boxes, labels, sizes,
                          ["scratch", "patch"]) is None
