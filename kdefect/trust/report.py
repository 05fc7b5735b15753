"""``kdefect report RUN``: one self-contained, offline HTML file plus the model card.

Why self-contained: the report is an audit record; it must open years later
on an air-gapped PC exactly as written, so every image is embedded as base64
and there is no script, font or style sheet from the network.  The PNGs are
also kept in ``<run>/report/`` for reuse.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.run import RunDir
from kdefect.trust.html_parts import img, table
from kdefect.utils.io import sha256_file, write_text

log = logging.getLogger(__name__)

SECTIONS = ("Verdict", "Summary", "Training curves", "Confusion matrix", "Per-class metrics", "Precision-recall curves",
            "Reliability diagram", "Risk-coverage and review", "Escape-rate table", "Out-of-distribution",
            "Gallery: misclassified and review-flagged", "Explanations", "TFLite fidelity", "Model card")

_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "th{background:#eee}img{max-width:100%}.g{display:inline-block;margin:4px;font-size:11px;width:150px;"
        "vertical-align:top}.g img{width:72px;image-rendering:pixelated}pre{background:#f6f6f6;padding:.5em;"
        "overflow:auto}.bad{color:#b00}.verdict{font-size:1.6em;font-weight:bold;padding:.3em .6em;display:inline-block}"
        ".ready{background:#dfd;color:#060}.notready{background:#fdd;color:#900}")


def verdict_html(v: dict[str, Any] | None) -> str:
    """The verdict banner, its reasons and the fit-for-use table (the first thing an auditor reads)."""
    if not v:
        return '<p class="verdict notready">NOT READY</p><p>This run has no verdict: run kdefect calibrate.</p>'
    cls = "ready" if v["ready"] else "notready"
    out = f'<p class="verdict {cls}">{html.escape(v["verdict"])}</p>'
    if v["reasons"]:
        out += "<ul>" + "".join(f'<li class="bad">{html.escape(r)}</li>' for r in v["reasons"]) + "</ul>"
    t = v["targets"]
    rows = [[f"recall {c}", "n/a" if r is None else r, f">= {t['min_class_recall']}"]
            for c, r in v["per_class_recall"].items()]
    if "escape_rate" in v:
        rows += [["escape rate (95% CP upper)", f"{v['escape_rate']:.4f} ({v['escape_upper95']:.4f})",
                  f"upper <= {t['max_escape_upper']}"],
                 ["false-reject rate", v["false_reject_rate"], f"<= {t['max_false_reject']}"]]
    rows.append(["review share", v["review_share"], f"<= {t['max_review_share']}"])
    return out + table([f"{v['split']} split ({v['n']} parts)", "value", "target (trust.targets)"], rows)


def _ci(k: int, n: int) -> str:
    from kdefect.trust.operating_point import clopper_pearson, wilson  # lazy: trust.operating_point loads scipy

    if n == 0:
        return "n/a"
    w, c = wilson(k, n), clopper_pearson(k, n)
    return f"W [{w[0]:.3f}, {w[1]:.3f}] / CP [{c[0]:.3f}, {c[1]:.3f}]"


def _per_class(cm: np.ndarray, classes: list[str]) -> str:
    rows = []
    for i, c in enumerate(classes):
        tp, sup, pred = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        rows.append([c, sup, tp / sup if sup else 0.0, _ci(tp, sup), tp / pred if pred else 0.0, _ci(tp, pred)])
    return table(["class", "support", "recall", "recall 95% CI", "precision", "precision 95% CI"], rows)


def tflite_fidelity(run: Any, images: np.ndarray, keras_probs: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Top-1 agreement and accuracy of every ``<run>/export/**/*.tflite`` vs the Keras model on the test split."""
    from kdefect.edge.interpreter import TFLiteRunner

    rows = []
    for path in sorted((run.path / "export").rglob("*.tflite")) if (run.path / "export").is_dir() else []:
        try:
            probs = TFLiteRunner(path).run_all(images.astype(np.float32))[0]
        except Exception as exc:  # a model this report cannot run (e.g. Edge TPU only) is listed, not fatal
            rows.append({"model": str(path.relative_to(run.path)), "error": str(exc)[:200]})
            continue
        rows.append({"model": str(path.relative_to(run.path)), "n": len(y),
                     "agreement": float((probs.argmax(1) == keras_probs.argmax(1)).mean()),
                     "accuracy": float((probs.argmax(1) == y).mean()),
                     "keras_accuracy": float((keras_probs.argmax(1) == y).mean()),
                     "max_abs_prob_diff": float(np.abs(probs - keras_probs).max())})
    return rows


def _gallery(model: Any, images: np.ndarray, paths: list[str], y: np.ndarray, probs: np.ndarray, classes: list[str],
             review_below: float, limit: int) -> tuple[str, int]:
    from kdefect.trust.explain import gradcam, overlay, png_bytes

    pred, conf = probs.argmax(1), probs.max(1)
    flagged = np.nonzero((pred != y) | (conf < review_below))[0]
    flagged = flagged[np.argsort(conf[flagged])][:limit]
    if len(flagged) == 0:
        return "<p>No misclassified or review-flagged test images.</p>", 0
    cams = gradcam(model, images[flagged].astype(np.float32), pred[flagged])
    cells = []
    for j, i in enumerate(flagged):
        kind = "wrong" if pred[i] != y[i] else "review"
        cells.append(f'<div class="g">{img(png_bytes(images[i]), "image")}{img(png_bytes(overlay(images[i], cams[j])), "Grad-CAM")}'
                     f'<br><b class="{"bad" if kind == "wrong" else ""}">{kind}</b> true {html.escape(classes[y[i]])}'
                     f", pred {html.escape(classes[pred[i]])} ({conf[i]:.3f})<br>{html.escape(Path(paths[i]).name)}</div>")
    return "".join(cells), len(flagged)


def build_report(run_dir: str | Path, out: str | Path | None = None, gallery_max: int = 24) -> Path:
    """Write ``<run>/report.html`` (or ``out``) and ``<run>/model_card.md``; return the HTML path."""
    from kdefect.engine.metrics import plot_confusion_matrix
    from kdefect.trust import figures, model_card, operating_point, uncertainty
    from kdefect.trust.calibrate import CALIBRATION_FILE, apply_temperature, calibrate_run
    from kdefect.trust.ood import energy_score  # lazy: trust.ood loads scipy
    from kdefect.trust.outputs import load_model, split_images, split_outputs

    run = RunDir.open(run_dir)
    classes, good = run.classes()
    cal_file = run.path / CALIBRATION_FILE
    cal = run.read_json(CALIBRATION_FILE) if cal_file.is_file() else {}
    if cal.get("model_sha256") != sha256_file(run.model_path):
        cal = calibrate_run(run.path)
    model = load_model(run.model_path)
    paths, y, images = split_images(run, "test")
    test = split_outputs(run, "test", model=model)
    val = split_outputs(run, "val", model=model)
    t = cal["temperature"]
    probs, vprobs = apply_temperature(test["logits"], t), apply_temperature(val["logits"], t)
    fig = run.path / "report"
    s: dict[str, str] = {}

    metrics = run.read_json("metrics.json") if run.metrics_path.is_file() else {}
    cm = np.zeros((len(classes), len(classes)), int)
    np.add.at(cm, (y, probs.argmax(1)), 1)
    acc = float((probs.argmax(1) == y).mean()) if len(y) else 0.0
    s["Verdict"] = verdict_html(cal.get("verdict"))
    s["Summary"] = table(["item", "value"], [
        ["run", str(run.path)], ["test images", len(y)], ["test accuracy", acc],
        ["temperature", t], ["test ECE before -> after", f"{cal['test_ece_before']:.4f} -> {cal['test_ece_after']:.4f}"],
        ["review below (calibrated confidence)", cal["review_below"]],
        ["model sha256", cal.get("model_sha256", "")]])
    hist = run.path / "history.csv"
    s["Training curves"] = (img(figures.training_curves(figures.read_history(hist), fig / "curves.png"), "curves")
                            if hist.is_file() else "<p>No history.csv in this run.</p>")
    plot_confusion_matrix(cm, classes, str(fig / "confusion.png"), "Confusion matrix (test)")
    s["Confusion matrix"] = img(fig / "confusion.png", "confusion matrix")
    s["Per-class metrics"] = _per_class(cm, classes) + "<p>W = Wilson, CP = Clopper-Pearson (95%).</p>"
    pr_png, aps = figures.pr_curves(probs, y, classes, fig / "pr.png")
    s["Precision-recall curves"] = img(pr_png, "PR curves") + table(["class", "AP"], [[c, a] for c, a in aps.items()])
    s["Reliability diagram"] = img(run.path / "reliability.png", "reliability") + (
        f"<p>Validation ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f} with T = {t:.3f}.</p>")
    correct = probs.argmax(1) == y
    rc = uncertainty.risk_coverage(probs.max(1), correct)
    rows = [[f"{100 * r:.2f}%", uncertainty.review_share_for_risk(probs.max(1), correct, r)]
            for r in (0.002, 0.005, 0.01, 0.02, 0.05)]
    tr = cal["test_review"]
    s["Risk-coverage and review"] = img(figures.risk_coverage_plot(rc, fig / "risk_coverage.png", cal["review_below"],
                                                                    cal["target_risk"]), "risk-coverage") + (
        f"<p>Threshold chosen on validation for residual error <= {100 * cal['target_risk']:.2f}%: on test "
        f"{100 * tr['review_share']:.1f}% go to review, residual error {100 * tr['residual_error']:.2f}% "
        f"(95% upper {100 * tr['residual_error_upper95']:.2f}%).</p>"
        + table(["target residual error", "test review share needed (oracle)"], rows))
    if good is not None and good in classes:
        gi = classes.index(good)
        tab = operating_point.escape_table(probs, y, gi, val=(vprobs, val["y"]))
        s["Escape-rate table"] = table(
            ["target escape (val)", "threshold P(good)", "test escape", "escapes / defective", "95% CP upper",
             "false reject", "accuracy"],
            [[r["target_escape"], r["threshold"], r["escape_rate"], f"{r['escapes']} / {r['defective']}",
              r["escape_rate_ci95"][1], r["false_reject_rate"], r["accuracy"]] for r in tab])
    else:
        s["Escape-rate table"] = "<p>This run has no good / OK class, so escape rates do not apply.</p>"
    e = energy_score(test["logits"], t)
    s["Out-of-distribution"] = (f"<p>Energy score threshold {cal['ood']['threshold']:.3f} (flags "
                                f"{100 * (1 - cal['ood']['val_tpr']):.0f}% of validation); flags "
                                f"{100 * float((e > cal['ood']['threshold']).mean()):.1f}% of test images.</p>")
    if cal.get("feature_ood"):
        f = cal["feature_ood"]
        s["Out-of-distribution"] += (f"<p>kNN feature distance (k = {f['k']}, bank: training split) threshold "
                                     f"{f['threshold']:.4f} (flags {100 * (1 - f['val_tpr']):.0f}% of validation); "
                                     f"flags {100 * f['test_flag_share']:.1f}% of test images. "
                                     "<code>kdefect predict</code> reports it as <code>ood_knn</code>.</p>")
    gal, n_gal = _gallery(model, images, paths, y, probs, classes, cal["review_below"], gallery_max)
    s["Gallery: misclassified and review-flagged"] = gal
    from kdefect.trust.report_explain import explanations_section

    s["Explanations"] = explanations_section(run, images, y, classes, model)
    fid = tflite_fidelity(run, images, probs if t == 1.0 else apply_temperature(test["logits"], 1.0), y)
    s["TFLite fidelity"] = (table(list(fid[0].keys()), [list(r.values()) for r in fid]) if fid and "error" not in fid[0]
                            else "<p>No TFLite model in this run's export/ folder.</p>" if not fid
                            else table(["model", "error"], [[r["model"], r.get("error", "")] for r in fid]))
    card = model_card.render_model_card(run.path, run.config_path.read_text(encoding="utf-8"), classes, good,
                                        metrics or {"accuracy": acc}, cal, model_card.data_fingerprint(run.path))
    write_text(run.path / "model_card.md", card)
    s["Model card"] = f"<pre>{html.escape(card)}</pre>"
    body = "".join(f'<h2 id="s{i}">{html.escape(h)}</h2>\n{s[h]}\n' for i, h in enumerate(SECTIONS))
    toc = " | ".join(f'<a href="#s{i}">{html.escape(h)}</a>' for i, h in enumerate(SECTIONS))
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>kdefect report: '
           f"{html.escape(run.path.name)}</title><style>{_CSS}</style></head><body><h1>kdefect report: "
           f"{html.escape(run.path.name)}</h1><p>{toc}</p>{body}</body></html>\n")
    out_path = Path(out) if out else run.path / "report.html"
    write_text(out_path, doc)
    log.info("report with %d gallery images -> %s", n_gal, out_path)
    return out_path
