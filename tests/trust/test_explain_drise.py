"""D-RISE on a hand-built detector whose right answer is known, its settings, and the error paths.

The fake detector "detects" one box where a bright square is, with a class-score vector that grows with how much of
the square is still visible; below a visibility threshold it keeps no box, as a real decoder drops a weak box.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.errors import ModelError
from kdefect.trust.explain_drise import MaskDraws, drise_map, similarity
from kdefect.trust.faithfulness import localisation
from kdefect.trust.model_fn import BoxVectors
from kdefect.trust.saliency import display
from kdefect.trust.saliency_settings import ExplainSettings

SIZE = 48
PATCH = (28, 8, 40, 20)  # x0, y0, x1, y1
FAST = ExplainSettings(seed=0, drise_masks=200, drise_cells=8)


def patch_image() -> np.ndarray:
    x = np.full((SIZE, SIZE, 3), 60.0, np.float32)
    x += np.random.default_rng(1).normal(0, 5, x.shape).astype(np.float32)
    x0, y0, x1, y1 = PATCH
    x[y0:y1, x0:x1] = 240.0
    return x


class FakeDetector:
    """One box on the bright square; score = the square's visible brightness above the background."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: np.ndarray) -> list[BoxVectors]:
        out = []
        for im in np.asarray(images, np.float32):
            x0, y0, x1, y1 = PATCH
            score = float(np.clip((im[y0:y1, x0:x1].mean() - 60.0) / 180.0, 0, 1))
            if score < 0.3:  # the decoder's score_threshold: a weak box is not kept
                out.append(BoxVectors(np.zeros((0, 4), np.float32), np.zeros(0, int), np.zeros(0, np.float32),
                                      np.zeros((0, 2), np.float32)))
                continue
            vec = np.array([[0.05, score]], np.float32)
            out.append(BoxVectors(np.array([PATCH], np.float32), np.array([1]), np.array([score], np.float32), vec))
        self.images += len(out)
        return out


def test_the_map_peaks_inside_the_detected_box():
    fn = FakeDetector()
    s = drise_map(fn, patch_image(), FAST)
    assert s.heat.shape == (SIZE, SIZE) and np.isfinite(s.heat).all()
    y, x = np.unravel_index(int(np.argmax(s.heat)), s.heat.shape)
    x0, y0, x1, y1 = PATCH
    assert x0 <= x < x1 and y0 <= y < y1
    loc = localisation(s.heat, np.array([PATCH]))
    assert loc["pointing_hit"] and loc["heat_share_inside"] > 3 * loc["area_share"]
    assert s.box_index == 0 and s.class_index == 1 and list(s.box) == list(PATCH)
    assert s.model_images == FAST.drise_masks + 1 == fn.images


def test_same_seed_same_map_other_seed_other_map():
    a, b = (drise_map(FakeDetector(), patch_image(), FAST).heat for _ in range(2))
    c = drise_map(FakeDetector(), patch_image(), ExplainSettings(seed=7, drise_masks=200, drise_cells=8)).heat
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_masks_are_smooth_shifted_and_keep_about_p():
    d = MaskDraws((SIZE, SIZE), ExplainSettings(seed=0, drise_masks=400, drise_cells=8, drise_keep=0.3))
    m = d.masks(0, 400)
    assert m.shape == (400, SIZE, SIZE) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean() - 0.3) < 0.03
    assert len(np.unique(np.round(m[0], 3))) > 2  # bilinear, not binary
    assert len({tuple(s) for s in d.shifts}) > 10  # random shifts


def test_similarity_is_iou_times_cosine():
    found = BoxVectors(np.array([[0, 0, 10, 10], [0, 0, 20, 10]], np.float32), np.array([0, 1]),
                       np.array([0.9, 0.8]), np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert similarity(np.array([0, 0, 10, 10], np.float32), np.array([1.0, 0.0]), found) == pytest.approx(1.0)
    # the first box overlaps by half with orthogonal scores (0), the second matches exactly with cosine 1/sqrt(2)
    assert similarity(np.array([0, 0, 20, 10], np.float32), np.array([0.0, 1.0]), found) == pytest.approx(
        1.0 / np.sqrt(2), abs=1e-6)
    assert similarity(np.array([0, 0, 20, 10], np.float32), np.array([1.0, 0.0]), found) == pytest.approx(
        max(0.5 * 1.0, 1.0 / np.sqrt(2)), abs=1e-6)
    empty = BoxVectors(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 2)))
    assert similarity(np.array([0, 0, 10, 10], np.float32), np.array([1.0, 0.0]), empty) == 0.0


def test_a_box_no_mask_changes_gives_an_empty_map_not_amplified_noise():
    class Always(FakeDetector):
        def __call__(self, images):
            return [BoxVectors(np.array([PATCH], np.float32), np.array([1]), np.array([0.9]), np.array([[0.1, 0.9]]))
                    for _ in images]

    s = drise_map(Always(), patch_image(), FAST)
    assert not s.heat.any() and display(s.heat).max() == 0


def test_a_box_the_detector_did_not_find_is_refused():
    with pytest.raises(ModelError, match="box 1 does not exist.*keeps 1 box"):
        drise_map(FakeDetector(), patch_image(), FAST, box=1)


def test_settings_are_checked():
    with pytest.raises(ModelError, match="D-RISE"):
        ExplainSettings(drise_keep=1.0)


# --- which method for which model --------------------------------------------------------------------------------
def _fake_model(tmp_path, task: str) -> str:
    """A .tflite path whose sidecar names ``task`` (the checks read only the sidecar)."""
    import json

    (tmp_path / "m.tflite").write_bytes(b"not a model")
    (tmp_path / "m.json").write_text(json.dumps({"sha256": "0" * 64, "task": task, "labels": ["a", "b"],
                                                 "input": {"size": [32, 32]}}))
    return str(tmp_path / "m.tflite")


def test_detectors_get_drise_and_classifiers_the_others(tmp_path):
    from kdefect.trust.explain_detect import check_methods, default_methods

    (tmp_path / "d").mkdir()
    (tmp_path / "c").mkdir()
    det, clf = _fake_model(tmp_path / "d", "detect"), _fake_model(tmp_path / "c", "classify")
    assert default_methods(det) == ["drise"] and default_methods(clf) == ["lime"]
    assert check_methods(det, ["drise"], None) and not check_methods(clf, ["lime", "shap"], None)
    for methods in (["lime"], ["drise", "shap"], ["gradcam"]):
        with pytest.raises(ModelError, match="is a detector: explain its boxes with --method drise"):
            check_methods(det, methods, None)
    with pytest.raises(ModelError, match="drise explains a detector's box.*is a classifier"):
        check_methods(clf, ["drise"], None)
    with pytest.raises(ModelError, match="--class does not apply to a detector"):
        check_methods(det, ["drise"], "scratch")


def test_cli_refuses_the_wrong_method_in_one_line(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from kdefect.cli import main

    (tmp_path / "d").mkdir()
    det = _fake_model(tmp_path / "d", "detect")
    img = tmp_path / "x.png"
    Image.fromarray(patch_image().astype(np.uint8)).save(img)
    for method in ("lime", "occlusion"):
        r = CliRunner().invoke(main, ["explain", det, str(img), "--method", method])
        assert r.exit_code == 2 and "is a detector" in r.output and "Traceback" not in r.output
