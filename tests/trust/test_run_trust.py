"""Trust layer on a real (tiny) run folder: calibrate, report, explain, monitor, MC-dropout / TTA."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest


def test_calibrate_run_writes_thresholds_and_baseline(calibrated):
    run, cal = calibrated
    saved = json.loads((run / "calibration.json").read_text())
    assert saved["temperature"] == pytest.approx(cal["temperature"]) and cal["temperature"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # T minimises validation NLL
    assert 0.0 <= cal["review_below"] <= 1.0 + 1e-9
    n_val = len((run / "split" / "val.txt").read_text().splitlines())
    assert len(cal["baseline"]["confidence"]) == n_val == sum(cal["baseline"]["class_counts"])
    op = cal["operating_point"]
    assert op["val"]["escape_rate"] <= op["target_escape"] + 1e-12
    assert cal["decision"]["good_min_prob"] == op["good_min_prob"]
    assert (run / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    knn = cal["feature_ood"]  # host-only kNN gate on the penultimate features, bank = training split
    assert knn["score"] == "knn" and knn["k"] >= 1 and 0.0 <= knn["test_flag_share"] <= 1.0
    dev = cal["device_ood"]  # the probability-only score the device can compute
    assert dev["method"] == "msp" and 0.0 <= dev["threshold"] <= 1.0


def test_predict_applies_the_calibrated_decision_rule_like_the_device(calibrated):
    from kdefect.core.decisions import softmax
    from kdefect.engine import predict
    from kdefect.trust.outputs import split_outputs

    run, cal = calibrated
    from kdefect.core.run import RunDir

    rd = RunDir.open(run)
    classes = rd.classes()[0]
    test = split_outputs(rd, "test")
    rows = predict(run, test["paths"][:12])
    assert len(rows) == 12
    for r, z in zip(rows, test["logits"][:12], strict=True):
        pr = np.array([r[f"p_{c}"] for c in classes])
        assert pr == pytest.approx(softmax(z / cal["temperature"]), abs=2e-4)  # calibrated, as on the device
        p = pr  # the flags follow from the row's own calibrated probabilities
        assert r["class"] == classes[int(p.argmax())]
        assert r["review"] == (p.max() < cal["review_below"])
        assert r["ood"] == (1 - p.max() > cal["device_ood"]["threshold"])
        assert r["ood_knn"] in (True, False)  # calibrated run: the host-only kNN gate is applied too
        good = cal["decision"]
        assert r["verdict"] == ("pass" if p[classes.index(good["good_label"])] >= good["good_min_prob"] else "fail")


def test_report_has_every_section_embedded_images_and_no_network(calibrated):
    from kdefect.trust.report import SECTIONS, build_report

    run, _ = calibrated
    path = build_report(run, gallery_max=6)
    text = path.read_text()
    for h in SECTIONS:
        assert f">{h}</h2>" in text.replace("&amp;", "&"), h
    assert text.count('src="data:image/png;base64,') >= 8
    assert not re.search(r"https?://", text)
    assert not re.search(r"<(script|link)\b", text)
    card = (run / "model_card.md").read_text()
    assert "## Intended use" in card and "## Limitations" in card
    assert re.search(r"Fingerprint .*`[0-9a-f]{64}`", card)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no headless chromium installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(calibrated, tmp_path):
    from kdefect.trust.report import SECTIONS, build_report

    run, _ = calibrated
    path = build_report(run, tmp_path / "r.html", gallery_max=4)
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout.replace("&amp;", "&")
    assert all(h in dom for h in SECTIONS)
    png = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1100,3000", path.as_uri()], capture_output=True, timeout=120)
    assert png.is_file() and png.stat().st_size > 10_000


def _stream(path, model, images, temperature, review_below, n, rng, classes):
    from kdefect.trust.calibrate import apply_temperature
    from kdefect.trust.outputs import predict_heads

    probs = apply_temperature(predict_heads(model, images)["logits"], temperature)
    idx = rng.integers(0, len(probs), n)
    with open(path, "w") as fh:
        for i in idx:
            p = probs[i]
            fh.write(json.dumps({"time": "t", "source": f"img{i}.png", "label": classes[int(p.argmax())],
                                 "score": float(p.max()), "probs": p.tolist(), "review": bool(p.max() < review_below),
                                 "ood": {"method": "msp", "score": 0.1, "threshold": 0.5, "flag": False}, "latency_ms": 1.0, "model_sha256": "x"}) + "\n")
        fh.write('{"time": "t", "source": "bad.png", "error": "truncated image"}\n')
    return path


def test_monitor_flags_shifted_stream_and_not_unshifted(calibrated, tmp_path, easy):
    from kdefect.data.split import load_split
    from kdefect.trust.monitor import monitor
    from kdefect.trust.outputs import load_model, split_images

    run, cal = calibrated
    from kdefect.core.run import RunDir

    r = RunDir.open(run)
    model = load_model(r.model_path)
    _, _, val_images = split_images(r, "val")
    assert load_split(run)["val"][0]
    rng = np.random.default_rng(0)
    same = _stream(tmp_path / "same.jsonl", model, val_images, cal["temperature"], cal["review_below"], 400, rng, easy.CLASSES)
    res = monitor(run, same, tmp_path / "m1")
    assert res["recommendation"] == "ok", res["alerts"]
    assert res["skipped_records"] == 1 and (tmp_path / "m1" / "monitor.html").is_file()
    # process change: darker parts with a strong glare gradient
    shifted_imgs = np.clip(val_images.astype(np.float32) * 0.35 + np.linspace(0, 150, val_images.shape[2])[None, None, :, None], 0, 255)
    shifted = _stream(tmp_path / "shift.jsonl", model, shifted_imgs, cal["temperature"], cal["review_below"], 400, rng, easy.CLASSES)
    res = monitor(run, shifted, tmp_path / "m2")
    assert res["recommendation"] == "retrain" and res["alerts"]
    assert (tmp_path / "m2" / "monitor.png").read_bytes()[:4] == b"\x89PNG"
    assert monitor(run, shifted, tmp_path / "m3", last=10)["recommendation"] == "insufficient data"


def test_gradcam_heat_falls_on_planted_defect(trust_run, easy):
    from kdefect.trust.explain import gradcam, heat_in_boxes
    from kdefect.trust.outputs import load_model

    model = load_model(trust_run / "model.keras")
    rng = np.random.default_rng(123)
    samples = [easy.sample(c, 32, rng) for c in ("spot", "patch") for _ in range(10)]
    x = np.stack([s[0] for s in samples])
    cams = gradcam(model, x, backend="native")
    stats = [heat_in_boxes(c, s[1]) for c, s in zip(cams, samples, strict=True)]
    inside_more = np.mean([s["mean_inside"] > s["mean_outside"] for s in stats])
    assert inside_more >= 0.8, stats
    assert np.mean([s["heat_share_inside"] for s in stats]) > 2 * np.mean([s["area_share"] for s in stats])
    pytest.importorskip("tf_keras_vis")
    other = gradcam(model, x, backend="tf-keras-vis")
    assert np.corrcoef(cams.ravel(), other.ravel())[0, 1] > 0.95  # same CAM; the libraries upsample differently


def test_mc_dropout_and_tta(trust_run, easy):
    from kdefect.trust.outputs import load_model
    from kdefect.trust.uncertainty import mc_dropout_probs, tta_probs

    model = load_model(trust_run / "model.keras")
    bn = [w.numpy().copy() for w in model.non_trainable_weights]
    x = np.stack([easy.sample("patch", 32, np.random.default_rng(i))[0] for i in range(4)]).astype(np.float32)
    mean, std = mc_dropout_probs(model, x, n=8)
    assert mean.shape == (4, len(easy.CLASSES)) and np.allclose(mean.sum(1), 1, atol=1e-5) and std.max() > 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(bn, model.non_trainable_weights, strict=True))
    mean, _ = tta_probs(model, x)
    assert mean.shape == (4, len(easy.CLASSES)) and np.allclose(mean.sum(1), 1, atol=1e-5)


def test_a_stale_outputs_cache_is_not_taken_for_fresh(calibrated, tmp_path):
    """calibrate_run loads the model once when any split's cache is stale, not once per split (the key, not the file)."""
    from kdefect.core.run import RunDir
    from kdefect.trust.outputs import outputs_cache, outputs_fresh

    run = RunDir.open(shutil.copytree(calibrated[0], tmp_path / "run"))
    assert all(outputs_fresh(run, s) for s in ("train", "val", "test"))  # calibration cached all three
    test_list = run.path / "split" / "test.txt"
    test_list.write_text("".join(test_list.read_text().splitlines(keepends=True)[1:]))  # the split changed
    assert outputs_cache(run, "test").is_file() and not outputs_fresh(run, "test")
    assert outputs_fresh(run, "val")


def test_model_card_lists_the_data_warnings_under_limitations(tmp_path):
    from kdefect.trust.model_card import render_model_card

    run = tmp_path / "run"
    run.mkdir()
    (run / "data_profile.json").write_text(json.dumps({"warnings": ["few images: 'rare' 3 train / 1 val / 1 test."]}))
    fp = {"sha256": "0" * 64, "counts": {}, "missing_files": 0}
    card = render_model_card(run, "name: x\n", ["good", "rare"], "good", {}, {}, fp)
    limits = card.split("## Limitations", 1)[1]
    assert "- Data: few images: 'rare' 3 train / 1 val / 1 test." in limits
