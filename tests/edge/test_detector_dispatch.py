"""`kdefect-edge` picks the model class from the sidecar's task; a detector refuses classifier-only options.

The end-to-end detector run (boxes and verdicts equal to `kdefect predict det.tflite`) is in
tests/detect/test_train_export.py, beside the only exported detector the suite trains.
"""

from __future__ import annotations

import gc
import json

import pytest

from kdefect.edge.cli import main, part_line
from kdefect.errors import EdgeError

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_interpreters():
    yield
    gc.collect()  # as in test_cli_output.py: free the interpreters before pytest rewrites the next module


def test_detector_refuses_classifier_options_in_one_line(tmp_path, capsys):
    model = tmp_path / "det.tflite"
    model.write_bytes(b"not read: the options are refused first")
    model.with_suffix(".json").write_text(json.dumps({"task": "detect"}))
    (tmp_path / "imgs").mkdir()
    for opt in (["--review-below", "0.5"], ["--temperature", "2"], ["--expect-size", "200x200"]):
        assert main([str(model), str(tmp_path / "imgs"), *opt, "--log", str(tmp_path / "d.jsonl")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and opt[0] in err and "is a detector" in err
    assert not (tmp_path / "d.jsonl").exists()  # refused before the log exists


def test_edge_detector_refuses_a_classifier_and_a_missing_file(edge_model, tmp_path):
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.edge.detector import EdgeDetector

    with pytest.raises(EdgeError, match="not a detector"):
        EdgeDetector(edge_model)
    with pytest.raises(EdgeError, match="does not exist"):
        EdgeDetector(tmp_path / "missing.tflite")
    clf = EdgeClassifier(edge_model)  # the shared base: identity and warm-up as before
    assert clf.sha256 and clf.backend
    clf.warm_up(1)


def test_part_line_shows_a_detectors_box_count():
    rec = {"source": "a.png", "label": "patches", "score": 0.91, "verdict": "fail", "review": False, "ood": None,
           "boxes": [{"box": [1, 2, 3, 4], "class_id": 2, "score": 0.91, "label": "patches"}] * 2}
    assert part_line(rec) == "a.png  patches  0.910  fail  2 box(es)"
    assert "box" not in part_line({**rec, "boxes": None})
