"""Export benchmark: float32 / float16 / PTQ / QAT / pruned+PQAT / distilled+QAT TFLite models of one run.

For each variant: test accuracy, macro recall, top-1 agreement and max probability difference with the
run's float Keras model, size on disk (raw and gzipped), latency p50 / p95 (1 thread and all cores).
Writes ``<out>.json`` and ``<out>.md`` and checks the issue's targets.

    python tools/bench_export.py --run runs/neu_mobilenet_v2 --out tools/results/export_neu
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "float32": {"mode": "float32"},
    "float16": {"mode": "float16"},
    "int8_ptq": {"mode": "int8"},
    "int8_qat": {"mode": "int8", "qat": True},
    "int8_prune50_pqat": {"mode": "int8", "prune": 0.5},
    "int8_distill_qat": {"mode": "int8", "distill": True},
}


def gz_size(path: str | Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))


def run_variant(name: str, spec: dict[str, Any], args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    from kdefect.export import evaluate_tflite, export_run

    kw: dict[str, Any] = {"mode": spec["mode"], "qat": spec.get("qat", False), "prune": spec.get("prune"),
                          "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                          "learning_rate": args.learning_rate, "calib_size": args.calib_size}
    if spec.get("distill"):
        kw.update(distill_from=args.teacher or args.run, student=args.student, distill_epochs=args.distill_epochs)
    t0 = time.perf_counter()
    res = export_run(args.run, out=out_dir / f"{name}.tflite", **kw)
    export_s = time.perf_counter() - t0
    ev = evaluate_tflite(res["model"], run_dir=args.run, threads=(1, os.cpu_count() or 1),
                         latency_images=args.latency_images, out=out_dir / f"{name}_evaluation")
    row = {
        "variant": name, "quantization": res["quantization"], "export_s": round(export_s, 1),
        "accuracy": ev["accuracy"], "macro_recall": ev["macro_recall"], "keras_accuracy": ev.get("keras_accuracy"),
        "top1_agreement": ev.get("top1_agreement"), "max_prob_diff": ev.get("max_prob_diff"),
        "size_bytes": res["size_bytes"], "size_gzip_bytes": gz_size(res["model"]),
        "latency_ms": ev["latency_ms"], "input": res["input"], "sparsity": res.get("sparsity"),
    }
    logging.info("%s: %s", name, json.dumps({k: row[k] for k in ("accuracy", "top1_agreement", "size_bytes")}))
    return row


def check_targets(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, each with the numbers it was judged on (None when a variant is missing)."""
    def get(v: str, k: str) -> Any:
        return rows.get(v, {}).get(k)

    def p50(v: str) -> float | None:
        return rows.get(v, {}).get("latency_ms", {}).get("1", {}).get("p50")

    t: dict[str, Any] = {}
    ka = get("int8_qat", "keras_accuracy")
    if get("int8_qat", "accuracy") is not None and ka is not None:
        t["qat_within_0.5pt_of_float"] = get("int8_qat", "accuracy") >= ka - 0.005
        t["qat_agreement_ge_99pct"] = get("int8_qat", "top1_agreement") >= 0.99
    if get("int8_qat", "accuracy") is not None and get("int8_ptq", "accuracy") is not None:
        t["qat_ge_ptq"] = get("int8_qat", "accuracy") >= get("int8_ptq", "accuracy")
    if get("int8_ptq", "size_bytes") and get("float32", "size_bytes"):
        t["int8_size_le_30pct_of_float32"] = get("int8_ptq", "size_bytes") <= 0.30 * get("float32", "size_bytes")
    if get("int8_prune50_pqat", "size_gzip_bytes") and get("int8_qat", "size_gzip_bytes"):
        t["pruned_gzip_le_60pct_of_dense_int8_gzip"] = (
            get("int8_prune50_pqat", "size_gzip_bytes") <= 0.60 * get("int8_qat", "size_gzip_bytes"))
    if p50("int8_ptq") and p50("float32"):
        t["int8_speedup_vs_float32"] = round(p50("float32") / p50("int8_ptq"), 2)
        t["int8_ge_1.5x_faster"] = p50("float32") / p50("int8_ptq") >= 1.5
    return t


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Export benchmark: {result['run']}", "", f"- command: `{result['command']}`",
             f"- date: {result['date']}", f"- machine: {result['machine']}", "",
             "| variant | accuracy | macro recall | agreement | max prob diff | size KiB | gzip KiB | p50 ms (1t) "
             "| p50 ms (all) | sparsity |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["variants"].values():
        lat = r["latency_ms"]
        all_t = lat.get(str(os.cpu_count() or 1), lat.get("1", {}))
        lines.append(
            f"| {r['variant']} | {r['accuracy']:.4f} | {r['macro_recall']:.4f} | {r.get('top1_agreement') or 0:.4f} "
            f"| {r.get('max_prob_diff') or 0:.4f} | {r['size_bytes'] / 1024:.1f} | {r['size_gzip_bytes'] / 1024:.1f} "
            f"| {lat['1']['p50']:.2f} | {all_t.get('p50', 0):.2f} | "
            f"{_fmt(r.get('sparsity'))} |")
    lines += ["", f"Float Keras test accuracy: {result.get('keras_accuracy')}", "", "## Targets", ""]
    lines += [f"- {k}: {v}" for k, v in result["targets"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="trained classification run folder")
    ap.add_argument("--out", default="tools/results/export", help="results path prefix (.json / .md)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--teacher", help="teacher run for distillation (default: --run)")
    ap.add_argument("--student", default="mobilenet_v3_small")
    ap.add_argument("--epochs", type=int, default=2, help="QAT / pruning fine-tuning epochs")
    ap.add_argument("--distill-epochs", type=int, default=10)
    ap.add_argument("--steps-per-epoch", type=int)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--calib-size", type=int, default=200)
    ap.add_argument("--latency-images", type=int, default=100)
    ap.add_argument("--models-dir", help="where the .tflite files go (default: RUN/export/bench)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kdefect.utils.io import write_json, write_text

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    models_dir = Path(args.models_dir) if args.models_dir else Path(args.run) / "export" / "bench"
    rows = {n: run_variant(n, VARIANTS[n], args, models_dir) for n in names}
    result = {
        "run": str(args.run), "command": " ".join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, {platform.system()}",
        "keras_accuracy": next((r["keras_accuracy"] for r in rows.values() if r.get("keras_accuracy") is not None),
                               None),
        "variants": rows, "targets": check_targets(rows),
    }
    write_json(f"{args.out}.json", result)
    write_text(f"{args.out}.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
