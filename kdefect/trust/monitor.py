"""``kdefect monitor RUN decisions.jsonl``: drift of production decisions vs the validation baseline.

Why: a process change (new supplier, worn tool, new lighting) shows first as
a shift in what the model predicts and how sure it is, long before anyone
measures the escape rate.  The edge runtime's decision log is compared with
the validation baseline stored by ``kdefect calibrate`` (calibration.json):
class mix (PSI), confidence distribution (PSI and two-sample KS), review and
OOD flag shares.  Crossing a threshold recommends re-validation/retraining.
TF-free: it reads JSON only.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from kdefect.core.decision_log import scan_log
from kdefect.errors import DataError
from kdefect.utils.io import atomic_path, read_json, write_json, write_text

log = logging.getLogger(__name__)


@dataclass
class DriftThresholds:
    """Alert limits; PSI > 0.25 is the usual "significant shift" rule of thumb."""

    psi_class_mix: float = 0.25
    psi_confidence: float = 0.25
    ks_pvalue: float = 0.01
    ks_statistic: float = 0.1
    flag_share_ratio: float = 2.0
    flag_share_margin: float = 0.05
    min_records: int = 50


def _ood_flagged(ood: Any) -> bool:
    """The edge log writes ``ood`` as ``{"method", "score", "threshold", "flag"}`` (or null when off)."""
    return bool(ood.get("flag")) if isinstance(ood, dict) else bool(ood)


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two histograms (counts or shares)."""
    e = np.asarray(expected, np.float64)
    a = np.asarray(actual, np.float64)
    e = np.clip(e / max(e.sum(), 1e-12), eps, None)
    a = np.clip(a / max(a.sum(), 1e-12), eps, None)
    return float(((a - e) * np.log(a / e)).sum())


# Bin edges on 1 - confidence: log-spaced so shifts near certainty show, but no finer than 1e-3, because an INT8
# model's uint8 probabilities (steps of 1/256 before temperature) cannot resolve more: finer bins (or quantile bins
# of a float baseline, which tie at 0.99999x) read pure quantization as drift (seen on NEU: PSI 0.51 on an
# unshifted stream).
CONFIDENCE_EDGES = np.array([1e-3, 1e-2, 0.03, 0.1, 0.2, 0.3, 0.5])


def confidence_psi(base: np.ndarray, prod: np.ndarray) -> float:
    """PSI of the confidence distributions over fixed bins of ``1 - confidence``."""
    be = np.bincount(np.searchsorted(CONFIDENCE_EDGES, 1 - np.asarray(base), side="right"),
                     minlength=len(CONFIDENCE_EDGES) + 1)
    pe = np.bincount(np.searchsorted(CONFIDENCE_EDGES, 1 - np.asarray(prod), side="right"),
                     minlength=len(CONFIDENCE_EDGES) + 1)
    return psi(be, pe)


def read_decisions(path: str | Path, last: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """Decision records, each part once; error records, torn lines and repeats are skipped and counted.

    Why de-duplicate: a part decided twice (a device restarted before it kept a ledger) would count twice.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"decision log '{p}' does not exist. Point to the JSONL file kdefect-edge writes.")
    scan = scan_log(p)
    if scan.duplicates:
        log.warning("%s: %d repeated record(s) of the same part counted once", p, scan.duplicates)
    recs = [r for r in scan.records
            if not r.get("error") and r.get("label") is not None and r.get("score") is not None]
    skipped = scan.torn + scan.duplicates + len(scan.records) - len(recs)
    return (recs[-last:] if last else recs), skipped


def _flag_alert(base: float, prod: float, th: DriftThresholds) -> bool:
    return prod > max(th.flag_share_ratio * base, base + th.flag_share_margin)


def compare(baseline: dict[str, Any], records: list[dict[str, Any]], th: DriftThresholds | None = None) -> dict[str, Any]:
    """Drift statistics and the retrain recommendation for ``records`` vs ``baseline``."""
    th = th or DriftThresholds()
    classes = list(baseline["classes"])
    n = len(records)
    prod_counts = np.array([sum(r["label"] == c for r in records) for c in classes], float)
    unknown = n - int(prod_counts.sum())
    base_conf = np.asarray(baseline["confidence"], np.float64)
    conf = np.array([float(r["score"]) for r in records])
    review = float(np.mean([bool(r.get("review")) for r in records])) if n else 0.0
    ood = float(np.mean([_ood_flagged(r.get("ood")) for r in records])) if n else 0.0
    ks = ks_2samp(base_conf, conf) if n and len(base_conf) else None
    stats = {
        "n": n, "unknown_labels": unknown,
        "class_mix": {"baseline": dict(zip(classes, np.asarray(baseline["class_counts"], float)
                                           / max(sum(baseline["class_counts"]), 1), strict=True)),
                      "production": dict(zip(classes, prod_counts / max(n, 1), strict=True)),
                      "psi": psi(baseline["class_counts"], prod_counts) if n else 0.0},
        "confidence": {"baseline_mean": float(base_conf.mean()) if len(base_conf) else 0.0,
                       "production_mean": float(conf.mean()) if n else 0.0,
                       "psi": confidence_psi(base_conf, conf) if n else 0.0,
                       "ks_statistic": float(ks.statistic) if ks else 0.0, "ks_pvalue": float(ks.pvalue) if ks else 1.0},
        "review_share": {"baseline": baseline.get("review_share", 0.0), "production": review},
        "ood_share": {"baseline": baseline.get("ood_share", 0.0), "production": ood},
    }
    reasons = []
    if n < th.min_records:
        return {**stats, "alerts": [], "recommendation": "insufficient data",
                "message": f"only {n} decisions (< {th.min_records}); collect more before judging drift.",
                "thresholds": asdict(th)}
    if stats["class_mix"]["psi"] > th.psi_class_mix:
        reasons.append(f"class mix shifted (PSI {stats['class_mix']['psi']:.3f} > {th.psi_class_mix})")
    c = stats["confidence"]
    if c["psi"] > th.psi_confidence:
        reasons.append(f"confidence distribution shifted (PSI {c['psi']:.3f} > {th.psi_confidence})")
    if c["ks_pvalue"] < th.ks_pvalue and c["ks_statistic"] > th.ks_statistic:
        reasons.append(f"confidence KS {c['ks_statistic']:.3f} (p = {c['ks_pvalue']:.2g})")
    for key, what in (("review_share", "review flags"), ("ood_share", "OOD flags")):
        if _flag_alert(stats[key]["baseline"], stats[key]["production"], th):
            reasons.append(f"{what} {100 * stats[key]['production']:.1f}% vs {100 * stats[key]['baseline']:.1f}% baseline")
    if unknown:
        reasons.append(f"{unknown} decisions with labels unknown to this run (different model?)")
    rec = "retrain" if reasons else "ok"
    msg = ("Retrain recommended: " + "; ".join(reasons) + ". Collect and label recent images, re-validate, "
           "and re-calibrate.") if reasons else "No drift beyond the thresholds."
    return {**stats, "alerts": reasons, "recommendation": rec, "message": msg, "thresholds": asdict(th)}


def _plot(baseline: dict[str, Any], records: list[dict[str, Any]], result: dict[str, Any], path: Path) -> Path:
    import matplotlib  # lazy: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only when a plot is drawn

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    edges = np.linspace(0, 1, 21)
    a1.hist(baseline["confidence"], edges, density=True, alpha=0.5, label="validation")
    a1.hist([float(r["score"]) for r in records], edges, density=True, alpha=0.5, label="production")
    a1.set_title(f"confidence (KS {result['confidence']['ks_statistic']:.2f})")
    a1.legend(fontsize=8)
    classes = list(baseline["classes"])
    x = np.arange(len(classes))
    a2.bar(x - 0.2, [result["class_mix"]["baseline"][c] for c in classes], 0.4, label="validation")
    a2.bar(x + 0.2, [result["class_mix"]["production"][c] for c in classes], 0.4, label="production")
    a2.set_xticks(x, classes, rotation=30, ha="right")
    a2.set_title(f"class mix (PSI {result['class_mix']['psi']:.2f})")
    a2.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def monitor(run_dir: str | Path, decisions: str | Path, out_dir: str | Path | None = None, last: int | None = None,
            thresholds: DriftThresholds | None = None) -> dict[str, Any]:
    """Compare a decision log with the run's baseline; write monitor.json / .png / .html into ``out_dir``."""
    cal_path = Path(run_dir) / "calibration.json"
    if not cal_path.is_file():
        raise DataError(f"'{cal_path}' is missing: run `kdefect calibrate {run_dir}` first (it stores the baseline).")
    baseline = read_json(cal_path).get("baseline")
    if not baseline:
        raise DataError(f"'{cal_path}' has no 'baseline'; re-run `kdefect calibrate {run_dir}`.")
    records, skipped = read_decisions(decisions, last)
    result = compare(baseline, records, thresholds)
    result.update({"decisions": str(decisions), "skipped_records": skipped, "run": str(run_dir)})
    out = Path(out_dir) if out_dir else Path(decisions).with_suffix("").parent / (Path(decisions).stem + "-monitor")
    write_json(out / "monitor.json", result)
    png = _plot(baseline, records, result, out / "monitor.png") if records else None
    img = (f'<img alt="drift" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
           if png else "")
    alerts = "".join(f"<li>{html.escape(a)}</li>" for a in result["alerts"])
    write_text(out / "monitor.html", (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>kdefect monitor</title></head>'
        f"<body style='font-family:sans-serif'><h1>Drift monitor: {html.escape(result['recommendation'])}</h1>"
        f"<p>{html.escape(result['message'])}</p><ul>{alerts}</ul><p>{result['n']} decisions "
        f"({skipped} skipped records) vs validation baseline.</p>{img}"
        f"<pre>{html.escape(json.dumps({k: result[k] for k in ('class_mix', 'confidence', 'review_share', 'ood_share')}, indent=1))}</pre>"
        "</body></html>\n"))
    log.info("monitor: %s (%d decisions) -> %s", result["recommendation"], result["n"], out)
    result["out_dir"] = str(out)
    return result
