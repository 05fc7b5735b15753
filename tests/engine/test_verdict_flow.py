"""fit profiles the data, resolves `auto`, calibrates and judges; export and evaluate --strict respect the verdict."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdefect.cli import main


def test_fit_writes_profile_resolved_config_and_a_verdict(fitted_run):
    prof = fitted_run.read_json("data_profile.json")
    assert prof["class_counts"] and prof["geometry"]["short_side"]["median"] == 48
    keys = {c["key"]: c for c in prof["recipe"]}
    assert keys["data.resize"]["value"] == "squash" and "aspect" in keys["data.resize"]["reason"]
    assert keys["train.monitor"]["value"] == "val_frr_at_escape"
    cfg = fitted_run.config()  # the saved config holds the concrete values, so the run is reproducible
    assert cfg.data.resize == "squash" and cfg.data.sampling == "shuffle" and cfg.train.monitor == "val_frr_at_escape"
    cal = fitted_run.read_json("calibration.json")
    v = cal["verdict"]
    assert v["split"] == "test" and v["verdict"] in ("READY", "NOT READY") and "escape_upper95" in v
    # 12 test parts per class: too few defective parts to show a 5% escape bound, and the verdict says so
    assert not v["ready"] and any("cannot show it" in r for r in v["reasons"])
    assert fitted_run.read_json("metrics.json")["training"]["monitor"] == "val_frr_at_escape"
    assert not fitted_run.verify_manifest()  # calibration.json is covered by the manifest


def test_export_refuses_an_unready_run_unless_allowed(fitted_run, tmp_path, caplog):
    from kdefect.errors import ExportError
    from kdefect.export import export_run

    with pytest.raises(ExportError, match="NOT READY.*--allow-unready"):
        export_run(fitted_run.path, out=tmp_path / "m.tflite", mode="float32")
    r = CliRunner().invoke(main, ["tflite", str(fitted_run.path), "--float32", "--out", str(tmp_path / "c.tflite")])
    assert r.exit_code == 2 and "NOT READY" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    res = export_run(fitted_run.path, out=tmp_path / "m.tflite", mode="float32", allow_unready=True)
    side = json.loads((tmp_path / "m.json").read_text())
    assert res["readiness"]["exported_unready"] and side["readiness"]["verdict"] == "NOT READY"
    assert side["readiness"]["reasons"] == fitted_run.read_json("calibration.json")["verdict"]["reasons"]
    from kdefect.edge.classifier import EdgeClassifier

    with caplog.at_level("WARNING", logger="kdefect.edge.classifier"):
        EdgeClassifier(tmp_path / "m.tflite")
    assert "exported although its verdict is NOT READY" in caplog.text  # the device says so at start-up


def test_evaluate_strict_exits_3_when_not_ready(fitted_run):
    cli = CliRunner()
    r = cli.invoke(main, ["-q", "evaluate", str(fitted_run.path)])
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "NOT READY"
    assert "verdict: NOT READY" in r.stderr
    assert cli.invoke(main, ["evaluate", str(fitted_run.path), "--strict"]).exit_code == 3


def test_uncalibrated_run_is_refused(fitted_run, tmp_path):
    import shutil

    from kdefect.errors import ExportError
    from kdefect.export import export_run

    copy = tmp_path / "copy"
    shutil.copytree(fitted_run.path, copy)
    (copy / "calibration.json").unlink()
    with pytest.raises(ExportError, match="not calibrated"):
        export_run(copy, out=tmp_path / "u.tflite", mode="float32")
