"""``kdefect explain`` and ``kdefect monitor`` on a calibrated tiny run (the trust commands through the CLI)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kdefect.cli import main


def test_monitor_and_explain_cli(calibrated, tmp_path, trust_data):
    run, _ = calibrated
    imgs = sorted((trust_data / "spot").glob("*.png"))[:3]
    res = CliRunner().invoke(main, ["explain", str(run), *map(str, imgs), "--out", str(tmp_path / "ex")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == sorted(f"{p.stem}_gradcam.png" for p in imgs)
    res = CliRunner().invoke(main, ["explain", str(run), str(imgs[0]), "--class", "nope"])
    assert res.exit_code == 2 and "not one of the model's classes" in res.output
    log = tmp_path / "d.jsonl"
    log.write_text("".join(json.dumps({"label": "good", "score": 0.2, "review": True, "ood": {"method": "msp", "score": 0.8, "threshold": 0.5, "flag": True}}) + "\n"
                           for _ in range(60)))
    res = CliRunner().invoke(main, ["monitor", str(run), str(log), "--out", str(tmp_path / "m")])
    assert res.exit_code == 3 and "Retrain recommended" in res.output
