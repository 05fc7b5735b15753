"""End to end on 64 px synthetic VOC: train 20 steps, predict, INT8 export round trip, evaluate the .tflite."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_loss_decreases_and_run_folder_complete(tiny_det_run):
    rows = list(csv.DictReader((tiny_det_run.path / "history.csv").read_text().splitlines()))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 4 and losses[-1] < losses[0]
    m = json.loads((tiny_det_run.path / "metrics.json").read_text())
    assert {"map50", "map", "recall", "missed", "per_class", "training"} <= set(m)
    assert set(m["per_class"]) == {"scratch", "spot", "crack", "patch"}
    for f in ("config.yaml", "classes.json", "split/test.txt", "detector.weights.h5", "manifest.json",
              "pr_curves/scratch.png"):
        assert (tiny_det_run.path / f).is_file(), f


def test_predictions_structure(tiny_det_run, det_voc_root, tmp_path):
    from kdefect.engine import predict  # the shared lifecycle dispatches to the detector

    files = sorted((det_voc_root / "images").glob("*.png"))[:3]
    res = predict(tiny_det_run.path, files, tmp_path / "p.json")
    assert [r["path"] for r in res] == [str(f) for f in files]
    for r in res:
        assert (r["width"], r["height"]) == (64, 64)
        thr = json.loads((tiny_det_run.path / "calibration.json").read_text())["decision"]["reject_min_score"]
        assert 0 <= r["best_score"] <= 1
        if abs(r["best_score"] - thr) > 1e-4:  # (best_score is rounded)
            assert r["reject"] == (r["best_score"] > thr)
        if r["detections"]:  # the best box (above score_threshold) is the image's best score
            assert max(d["score"] for d in r["detections"]) == pytest.approx(r["best_score"], abs=1e-4)
        for d in r["detections"]:
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 64
            assert d["label"] in ("scratch", "spot", "crack", "patch") and 0.05 < d["score"] <= 1
    assert json.loads((tmp_path / "p.json").read_text()) == res
    assert len(list((tmp_path / "p_annotated").glob("*.png"))) == 3


def test_int8_export_round_trip_agrees_with_keras(tiny_det_run, det_voc_root, tmp_path):
    from kdefect.core import detect_decode as dd
    from kdefect.core.sidecar import read_sidecar
    from kdefect.edge.interpreter import TFLiteRunner
    from kdefect.engine import evaluate
    from kdefect.export import export_run
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect import load_detector

    # `kdefect tflite RUN` dispatches; a 20-step detector is not READY, so it is exported as such
    res = export_run(str(tiny_det_run.path), out=tmp_path / "det.tflite", allow_unready=True)
    out = tmp_path / "det.tflite"
    assert res["task"] == "detect" and res["model"] == str(out)
    sc = read_sidecar(out)
    assert sc.task == "detect" and sc.detection["architecture"] == "yolov8" and sc.input.dtype == "uint8"
    model, _cfg, _ = load_detector(tiny_det_run.path)
    raw = raw_head(model, "yolov8")
    runner = TFLiteRunner(out)
    x = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.float32)
    ref = dict(zip(("boxes", "scores"), (np.asarray(t)[0] for t in raw(x[None], training=False))))
    got = dd.split_outputs(runner(x), sc.detection)
    for k in ("boxes", "scores"):
        span = ref[k].max() - ref[k].min()
        assert np.abs(got[k] - ref[k]).mean() < 0.03 * span, k
        assert np.corrcoef(got[k].ravel(), ref[k].ravel())[0, 1] > 0.98, k
    np.testing.assert_allclose(dd.sigmoid(got["scores"]), dd.sigmoid(ref["scores"]), atol=0.08)
    cal = tiny_det_run.read_json("calibration.json")  # the reject threshold chosen on validation travels along
    assert sc.detection["reject_min_score"] == pytest.approx(cal["decision"]["reject_min_score"])
    assert sc.readiness["verdict"] == cal["verdict"]["verdict"]
    assert sc.readiness["exported_unready"] == (cal["verdict"]["verdict"] != "READY")
    m = evaluate(out)  # `kdefect evaluate model.tflite` reads the sidecar's task, and judges with its threshold
    assert {"map50", "map", "recall", "latency_ms_p50"} <= set(m) and m["images"] == len(
        (tiny_det_run.path / "split" / "test.txt").read_text().splitlines())
    assert m["verdict"]["reject_min_score"] == pytest.approx(cal["decision"]["reject_min_score"])
    assert m["verdict"]["n"] == m["images"]
    _drise_on_the_exported_detector(out, det_voc_root, tmp_path)
    _edge_on_the_exported_detector(out, det_voc_root, tmp_path)


def _edge_on_the_exported_detector(model, det_voc_root, tmp_path):
    """`kdefect-edge det.tflite FOLDER` decides each part as `kdefect predict det.tflite` does: same boxes, same
    reject decision (the sidecar's reject_min_score), one durable record per part, a bad file logged not fatal."""
    import shutil

    from kdefect.edge.cli import main as edge_main
    from kdefect.engine import predict

    parts = tmp_path / "line"
    parts.mkdir()
    files = sorted((det_voc_root / "images").glob("*.png"))[::7][:6]
    for f in files:
        shutil.copy(f, parts / f.name)
    (parts / "zz_broken.png").write_bytes(b"not an image")
    log, summary = tmp_path / "det.jsonl", tmp_path / "det_summary.json"
    assert edge_main([str(model), str(parts), "--log", str(log), "--summary", str(summary), "-q",
                      "--threads", "1"]) == 0
    recs = {Path(r["source"]).name: r for r in map(json.loads, log.read_text().splitlines())}
    assert recs["zz_broken.png"]["error"] and len(recs) == len(files) + 1
    host = {Path(r["path"]).name: r for r in predict(model, [parts / f.name for f in files], tmp_path / "host.json")}
    for name, h in host.items():
        r = recs[name]
        assert r["verdict"] == ("fail" if h["reject"] else "pass"), name
        assert r["score"] == pytest.approx(h["best_score"], abs=1e-4)
        assert [(b["label"], b["class_id"]) for b in r["boxes"]] == [(d["label"], d["class_id"]) for d in
                                                                       h["detections"]]
        for b, d in zip(r["boxes"], h["detections"]):
            np.testing.assert_allclose(b["box"], d["box"], atol=0.02)
            assert b["score"] == pytest.approx(d["score"], abs=1e-4)
    s = json.loads(summary.read_text())
    assert s["decisions"] == len(files) and s["errors"] == 1
    assert sum(s["verdicts"].values()) == len(files)
    assert edge_main([str(model), str(parts), "--review-below", "0.5", "--log", str(tmp_path / "x.jsonl")]) == 2


def _drise_on_the_exported_detector(model, det_voc_root, tmp_path):
    """`kdefect explain det.tflite --method drise` (64 masks) on the export above, so no second export is paid."""
    from click.testing import CliRunner

    from kdefect.cli import main

    imgs = [p for p in sorted((det_voc_root / "images").glob("*.png")) if "good" not in p.name][:3]
    out = tmp_path / "drise"
    r = CliRunner().invoke(main, ["-q", "explain", str(model), *map(str, imgs), "--method", "drise", "--masks", "64",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["task"] == "detect" and summary["settings"]["drise_masks"] == 64
    done = [row for row in summary["images"] if "explained" in row]
    assert done and summary["cost"]["drise"]["n"] == len(done)
    assert summary["cost"]["drise"]["model_images_per_image"] == 65 and summary["cost"]["drise"]["s_per_image"] > 0
    for row in done:
        best = row["detections"][0]
        assert row["explained"]["index"] == 0 and row["explained"]["box"] == best["box"]
        assert best["score"] == max(d["score"] for d in row["detections"])
        assert (out / f"{Path(row['image']).stem}_drise.png").is_file()
    from kdefect.trust.explain_drise import drise_map
    from kdefect.trust.model_fn import TFLiteDetector
    from kdefect.trust.saliency_settings import ExplainSettings

    fn = TFLiteDetector(model)
    s = drise_map(fn, fn.load(done[0]["image"]), ExplainSettings(drise_masks=64))
    assert s.heat.shape == (64, 64) and np.isfinite(s.heat).all()
    assert s.spread == pytest.approx(done[0]["explained"]["weight_spread"], abs=1e-6)  # same seed, same masks
    np.testing.assert_allclose(s.box, done[0]["explained"]["box"], atol=0.01)
    r = CliRunner().invoke(main, ["explain", str(model), str(imgs[0]), "--method", "lime"])
    assert r.exit_code == 2 and "is a detector" in r.output


def test_fit_chooses_the_reject_threshold_on_val_and_judges_it_on_test(tiny_det_run):
    cal = json.loads((tiny_det_run.path / "calibration.json").read_text())
    thr = cal["decision"]["reject_min_score"]
    assert 0 <= thr <= 1 and cal["decision"]["chosen_on"] == "val"
    assert cal["operating_point"]["val"]["split"] == "val" and cal["verdict"]["split"] == "test"
    assert cal["verdict"]["reject_min_score"] == thr and "escape_upper95" in cal["verdict"]
    val = cal["operating_point"]["val"]  # the target held where the threshold was chosen
    assert val["escapes"] <= int(cal["decision"]["target_escape"] * val["defective"] + 1e-9)
    assert tiny_det_run.verify_manifest() == []


def test_not_ready_detector_is_refused(tiny_det_run, tmp_path, monkeypatch):
    """A copy of the run re-judged against an unreachable escape target: export stops before any conversion."""
    import shutil

    import kdefect.tasks.detect as detect_mod
    from kdefect.config import TargetsConfig
    from kdefect.errors import ExportError
    from kdefect.export import export_run
    from kdefect.trust.calibrate import calibrate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_det_run.path, run)  # the shared fixture keeps its own verdict
    loads, load = [], detect_mod.load_detector
    monkeypatch.setattr(detect_mod, "load_detector", lambda *a, **k: loads.append(1) or load(*a, **k))
    cal = calibrate_run(run, targets=TargetsConfig(max_escape_upper=0.001))  # needs > 3000 images
    assert cal["verdict"]["verdict"] == "NOT READY"
    assert len(loads) == 1  # val and test are scored with one model load
    assert cal["verdict"]["n"] == tiny_det_run.read_json("calibration.json")["verdict"]["n"]
    with pytest.raises(ExportError, match="NOT READY.*--allow-unready"):
        export_run(str(run), out=tmp_path / "refused.tflite")
    assert not (tmp_path / "refused.tflite").exists()


def test_detector_export_refuses_classifier_only_options_before_converting(tiny_det_run, tmp_path):
    from kdefect.edge.signing import new_key_pair
    from kdefect.errors import ExportError
    from kdefect.export import export_run

    private, _ = new_key_pair(tmp_path / "line")
    with pytest.raises(ExportError, match="detector exports are not signed yet"):
        export_run(str(tiny_det_run.path), out=tmp_path / "signed.tflite", sign_key=private)
    with pytest.raises(ExportError, match="detectors have no OOD gate"):
        export_run(str(tiny_det_run.path), out=tmp_path / "knn.tflite", ood_gate="knn")
    assert not list(tmp_path.glob("*.tflite"))


def test_val_map50_monitor_keeps_the_epoch_with_the_best_validation_map(tiny_det_run):
    """train.monitor=val_map50: every epoch is scored by validation mAP@0.5, recorded in history.csv, and the
    weights kept are those of the best-scoring epoch (their test metrics come from those weights)."""
    from kdefect.core.run import RunDir
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect import load_detector
    from kdefect.tasks.detect_infer import decode_params, map50_of, split_arrays

    run = tiny_det_run
    rows = list(csv.DictReader((run.path / "history.csv").read_text().splitlines()))
    maps = [float(r["val_map50"]) for r in rows]
    assert len(maps) == 4 and all(0.0 <= m <= 1.0 for m in maps)
    training = json.loads((run.path / "metrics.json").read_text())["training"]
    assert training["monitor"] == "val_map50"
    assert training["best_epoch"] == 1 + max(range(4), key=lambda i: (maps[i], -i))  # first of equal bests
    assert training["best_value"] == pytest.approx(max(maps), abs=1e-6)
    model, rcfg, classes = load_detector(run.path)  # the saved weights score what the kept epoch scored
    arr, _ = split_arrays(rcfg, RunDir.open(run.path), None, split="val")
    got = map50_of(raw_head(model, rcfg.detect.architecture), rcfg, classes, arr, decode_params(rcfg))
    assert got == pytest.approx(max(maps), abs=1e-4)
