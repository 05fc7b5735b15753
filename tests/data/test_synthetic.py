"""The procedural generator: deterministic, boxes on the defect, cached once."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.config import SyntheticConfig
from kdefect.data.synthetic import CLASSES, materialize_synthetic, render_sample
from kdefect.errors import ConfigError


@pytest.mark.parametrize("cls", CLASSES)
def test_render_deterministic_per_seed(cls):
    a, ba = render_sample(cls, 48, np.random.default_rng(7))
    b, bb = render_sample(cls, 48, np.random.default_rng(7))
    c, _ = render_sample(cls, 48, np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.shape == (48, 48, 3)
    assert ba.dtype == np.float32 and ba.shape[1] == 4
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(a, c)


def test_good_has_no_boxes_defects_do():
    rng = np.random.default_rng(0)
    for _ in range(10):
        assert render_sample("good", 32, rng)[1].shape == (0, 4)
        for cls in CLASSES[1:]:
            assert len(render_sample(cls, 32, rng)[1]) >= 1


@pytest.mark.parametrize("cls", CLASSES[1:])
def test_boxes_inside_image_and_around_defect(cls):
    size = 64
    for seed in range(8):
        img, boxes = render_sample(cls, size, np.random.default_rng(seed))
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= size).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        # the defect changes pixels: the box interior deviates from the image median more than the outside does
        grey = img.astype(float).mean(-1)
        dev = np.abs(grey - np.median(grey))
        inside = np.zeros_like(grey, bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside[y0:y1, x0:x1] = True
        assert dev[inside].max() > np.percentile(dev[~inside], 90)


def test_classes_differ_in_statistics():
    """Not trivial but learnable: mean |deviation| inside boxes is larger than the background's."""
    rng = np.random.default_rng(1)
    for cls in CLASSES[1:]:
        ratios = []
        for _ in range(10):
            img, boxes = render_sample(cls, 64, rng)
            grey = img.astype(float).mean(-1)
            x0, y0, x1, y1 = boxes[0].astype(int)
            ratios.append(np.abs(grey[y0:y1, x0:x1] - np.median(grey)).max() / (grey.std() + 1e-6))
        assert np.median(ratios) > 1.5, cls


def test_materialize_layouts_and_cache_reuse(tmp_path):
    cfg = SyntheticConfig(classes=["good", "scratch"], n_per_class=3, size=32, seed=1)
    root = materialize_synthetic(cfg, "folder", tmp_path)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert files == [f"{c}/{c}_{i}.png" for c in ("good", "scratch") for i in range(3)]
    mtime = (root / "good" / "good_0.png").stat().st_mtime_ns
    assert materialize_synthetic(cfg, "folder", tmp_path) == root
    assert (root / "good" / "good_0.png").stat().st_mtime_ns == mtime  # reused, not rewritten
    voc = materialize_synthetic(cfg, "voc", tmp_path)
    assert voc != root
    assert len(list((voc / "images").glob("*.png"))) == 6 and len(list((voc / "annotations").glob("*.xml"))) == 6
    other = materialize_synthetic(SyntheticConfig(classes=["good", "scratch"], n_per_class=3, size=32, seed=2),
                                  "folder", tmp_path)
    assert other != root
    assert not list(tmp_path.glob(".*tmp"))  # no leftovers from the atomic write


def test_materialize_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KDEFECT_CACHE", str(tmp_path))
    root = materialize_synthetic(SyntheticConfig(classes=["good", "spot"], n_per_class=1, size=16))
    assert root.parent == tmp_path


def test_bad_synthetic_config(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        materialize_synthetic(SyntheticConfig(classes=["good", "dent"]), "folder", tmp_path)
    with pytest.raises(ConfigError, match="layout"):
        materialize_synthetic(SyntheticConfig(), "coco", tmp_path)
