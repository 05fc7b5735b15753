"""The `auto` rules on hand-built profiles: each choice, and its reason, follows the data."""

from __future__ import annotations

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
    assert cfg.data.resize == "letterbox"
    assert cfg.data.image_size == [128, 128]  # long side 600, capped by data.max_auto_size


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
