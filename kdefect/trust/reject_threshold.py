"""The operating threshold and verdict of an image-level reject rule on boxes (detectors).

A detector has no temperature or P(good) to calibrate: the line rejects a part iff any box scores at or above
one threshold.  ``calibrate_run`` hands a task with ``image_scores`` here: the threshold is chosen on the
validation split for ``trust.target_escape`` (``operating_point.choose_reject_threshold``), judged on the test
split against ``trust.targets`` (``verdict.assess_images``) and written to ``calibration.json`` like a
classifier's, so ``fit``, ``evaluate`` and ``kdefect tflite`` read one file; the export carries the threshold in
the sidecar's ``detection.reject_min_score``, which ``core.detect_decode.rejects`` applies on the device.
"""

from __future__ import annotations

import logging
from typing import Any

from kdefect.core.calibration import CALIBRATION_FILE
from kdefect.trust.operating_point import choose_reject_threshold
from kdefect.trust.verdict import assess_images
from kdefect.utils.io import sha256_file

log = logging.getLogger(__name__)


def calibrate_image_run(run: Any, task: Any, target_escape: float, targets: Any) -> dict[str, Any]:
    """Choose the reject threshold on val, judge it on test; writes ``calibration.json`` and returns it."""
    scores = task.image_scores(run.path, ("val", "test"))  # one model load for both splits
    val, test = scores["val"], scores["test"]
    classes = val["classes"]
    thr = choose_reject_threshold(val["scores"], val["contains"].any(1), target_escape)
    source = "val"
    if thr is None:  # no defective validation image: nothing to choose on, the box threshold stays
        thr, source = float(val["params"].get("score_threshold", 0.25)), "detect.score_threshold"
    out: dict[str, Any] = {
        "task": task.name,
        "decision": {"rule": "reject if any box score >= reject_min_score", "reject_min_score": thr,
                     "target_escape": target_escape, "chosen_on": source},
    }
    if run.model_path.is_file():  # load_calibration ties the file to this model
        out["model_sha256"] = sha256_file(run.model_path)
    out["operating_point"] = {
        "reject_min_score": thr, "target_escape": target_escape,
        "val": assess_images(val["scores"], val["contains"], classes, thr, targets, split="val"),
    }
    if len(test["scores"]):
        verdict = assess_images(test["scores"], test["contains"], classes, thr, targets, split="test")
    else:
        verdict = assess_images(val["scores"], val["contains"], classes, thr, targets, split="val")
        verdict["reasons"].insert(0, "no held-out test split: the threshold was chosen on this validation split, "
                                     "so these figures are optimistic (set data.split with a test fraction)")
        verdict["ready"], verdict["verdict"] = False, "NOT READY"
    if source != "val":
        verdict["reasons"].insert(0, "no defective validation image: the reject threshold could not be chosen for "
                                     "trust.target_escape (detect.score_threshold is used)")
        verdict["ready"], verdict["verdict"] = False, "NOT READY"
    out["verdict"] = verdict
    run.write_json(CALIBRATION_FILE, out)
    run.update_manifest([CALIBRATION_FILE])
    log.info("calibrated %s: reject an image at box score >= %.4f (val, target escape %.2g%%); %s on %s",
             run.path, thr, 100 * target_escape, verdict["verdict"], verdict["split"])
    return out
