"""export_run writes the run's data.resize into the sidecar and calibrates on images resized that way."""

from __future__ import annotations

import shutil

import numpy as np
import yaml


def _run_with_resize(handmade_run, tmp_path, resize):
    run = tmp_path / "run"
    shutil.copytree(handmade_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if resize is None:
        cfg["data"].pop("resize", None)  # a run saved before data.resize existed
    else:
        cfg["data"]["resize"] = resize
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def test_letterbox_run_exports_letterbox_sidecar(handmade_run, tmp_path, monkeypatch):
    import kdefect.data.pipeline as pipeline
    from kdefect.core.sidecar import read_sidecar
    from kdefect.export import evaluate_tflite, export_run

    modes = []
    real = pipeline.load_images

    def spy(*args, **kw):
        modes.append(kw.get("resize"))
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "load_images", spy)
    res = export_run(_run_with_resize(handmade_run, tmp_path, "letterbox"), out=tmp_path / "m.tflite", mode="int8",
                     calib_size=6)
    assert read_sidecar(res["model"]).input.resize == "letterbox"
    assert modes == ["letterbox"]  # the representative images
    modes.clear()
    evaluate_tflite(res["model"], threads=(1,), latency_images=2, out=tmp_path / "eval")
    assert modes == ["letterbox"]  # the test split, resized as the device will


def test_old_run_without_resize_exports_squash(handmade_run, tmp_path):
    from kdefect.core.sidecar import read_sidecar
    from kdefect.export import evaluate_tflite, export_run

    res = export_run(_run_with_resize(handmade_run, tmp_path, None), out=tmp_path / "m.tflite", mode="float16")
    assert read_sidecar(res["model"]).input.resize == "squash"
    report = evaluate_tflite(res["model"], threads=(1,), latency_images=2, out=tmp_path / "eval")
    assert np.isfinite(report["accuracy"])
