"""`kdefect data check` / `fit` name the classes whose boxes RetinaNet's anchors cannot reach (synthetic VOC)."""

from __future__ import annotations


def _warnings(det_voc_root, *overrides):
    from kdefect.config import load_config
    from kdefect.engine.trainer import plan_run

    cfg = load_config(None, ["task=detect", f"data.source=voc:{det_voc_root}", "data.image_size=[64,64]",
                             *overrides])
    return plan_run(cfg).profile.get("warnings", [])


def test_plan_warns_when_retinanet_anchors_miss_a_class(det_voc_root):
    """The synthetic spots are smaller than the smallest default anchor (32 px at a 64 px input): no anchor
    reaches them, so RetinaNet would silently never learn spots. Anchors sized and shaped for the data clear it,
    and YOLOv8 (anchor-free) is never warned about."""
    import re

    def shares(*overrides):
        miss = [w for w in _warnings(det_voc_root, "detect.architecture=retinanet", *overrides)
                if "RetinaNet anchors" in w]
        assert len(miss) <= 1
        return {c: int(v) for c, v in re.findall(r"(\w+) (\d+)%", miss[0])} if miss else {}

    default = shares()
    assert default["spot"] == 0 and {"scratch", "crack"} <= set(default)
    fitted = shares("detect.anchor_sizes=[8,16,32,64,128]", "detect.anchor_aspect_ratios=[0.125,0.25,0.5,1,2,4,8]",
                    "detect.match_iou=[0.3,0.4]")
    assert set(fitted) <= {"spot"} and fitted.get("spot", 100) > 50  # the anchor grid's 8 px stride still bites
    assert not [w for w in _warnings(det_voc_root) if "RetinaNet anchors" in w]
