"""The runtime resizes as the sidecar's ``input.resize`` says, exactly like the host pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kdefect.edge.classifier import EdgeClassifier
from kdefect.errors import ModelIntegrityError

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _set_resize(model, mode):
    sc = json.loads(model.with_suffix(".json").read_text())
    sc["input"]["resize"] = mode
    model.with_suffix(".json").write_text(json.dumps(sc))


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_classifier_uses_the_sidecar_resize(model_copy, tmp_path, mode):
    from kdefect.data.pipeline import load_images

    _set_resize(model_copy, mode)
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (30, 90, 3), dtype=np.uint8)).save(path)
    clf = EdgeClassifier(model_copy)
    assert clf.resize == mode and clf.info()["resize"] == mode
    x = clf.load(path)
    np.testing.assert_array_equal(x.astype(np.uint8)[None], load_images([str(path)], clf.size, resize=mode))
    assert not np.array_equal(x.astype(np.uint8)[None], load_images([str(path)], clf.size))  # not squash


def test_old_sidecar_is_squash_and_unknown_mode_refused(model_copy):
    sc = json.loads(model_copy.with_suffix(".json").read_text())
    sc["input"].pop("resize", None)
    model_copy.with_suffix(".json").write_text(json.dumps(sc))
    assert EdgeClassifier(model_copy).resize == "squash"
    _set_resize(model_copy, "stretch")
    with pytest.raises(ModelIntegrityError, match="resize mode 'stretch'"):
        EdgeClassifier(model_copy)
