"""The README's "at a glance" table: each headline target beside what the committed results measured.

Why generated: a hand-typed summary goes stale the day a benchmark is rerun. Every cell here is read from a
results file under tools/results (the file and section are named in the row), and a row whose file is missing is
left out, not guessed. Ranges are over every run of the same recipe in that file, so one lucky seed cannot stand
for the recipe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# recipe.json sections that run configs/elpv_cls_resnet_small.yaml (the ELPV recipe), and those that run the
# shipped quick-start defaults with only data.source / data.good_label changed, with the arm that is the default
ELPV_RECIPE = ("elpv_target", "elpv_30min", "elpv_192", "elpv_224", "elpv_regularised", "elpv_arms_600",
               "elpv_neu_warm")
SHIPPED = {"defaults_40_epochs": "auto", "elpv_binary_balanced": "auto", "stem": "stem_s2", "capacity": "stem_s2"}


def _load(name: str) -> Any:
    path = RESULTS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _span(values: Iterable[float], fmt: str = "{:.3f}", unit: str = "") -> str:
    v = sorted(values)
    return (fmt.format(v[0]) if v[0] == v[-1] else f"{fmt.format(v[0])}-{fmt.format(v[-1])}") + unit


def _recipe_rows(data: dict[str, Any], sections: Iterable[str], dataset: str,
                 arm: str | Callable[[str], str] = "auto") -> list[dict[str, Any]]:
    pick = arm if callable(arm) else (lambda _s: arm)
    return [r for s in sections if s in data for r in data[s]["rows"]
            if r["dataset"] == dataset and r["arm"] == pick(s)]


def _row(area: str, measure: str, result: str, target: str, met: bool, source: str) -> dict[str, Any]:
    return {"area": area, "measure": measure, "result": result, "target": target,
            "status": "met" if met else "**missed**", "source": source}


def _classify() -> list[dict[str, Any]]:
    d = _load("classify.json")
    if not d:
        return []
    acc = d["best"]["row"]["test_accuracy"]
    return [_row("NEU-DET classification", "test accuracy, from scratch, 15 min on 2 CPU cores", f"{acc:.4f}",
                 f">= {d['best'].get('target_accuracy', 0.99)}", acc >= d["best"].get("target_accuracy", 0.99),
                 "classify.md, best")]


def _export() -> list[dict[str, Any]]:
    d = _load("export_neu_qat5.json")
    if not d:
        return []
    q, t = d["variants"]["int8_qat"], d.get("targets", {})
    return [_row("INT8 export (NEU-DET)", "QAT INT8 accuracy against float Keras",
                 f"{q['accuracy']:.4f} vs {q['keras_accuracy']:.4f}", "within 0.005",
                 t.get("qat_within_0.5pt_of_float"), "export_neu_qat5.md"),
            _row("INT8 export (NEU-DET)", "top-1 agreement INT8 / float", f"{q['top1_agreement']:.4f}", ">= 0.99",
                 t.get("qat_agreement_ge_99pct"), "export_neu_qat5.md")]


def _edge() -> list[dict[str, Any]]:
    d = _load("edge_bench_neu_arms.json")
    if not d:
        return []
    r, t, m = d["ratios_median"], d["targets"], d["meets"]
    return [_row("Device runtime", "kdefect-edge images/s (decode, resize, gates, log) against a hand-written loop "
                 "doing the same", f"{r['edge_vs_naive']:.3f}", f">= {t['edge_vs_naive_min']}", m.get("edge_vs_naive"),
                 "edge_bench_neu_arms.md"),
            _row("Device runtime", "kdefect-edge images/s against a bare invoke() loop on decoded tensors",
                 f"{r['edge_vs_bare']:.2f}", f">= {t['edge_vs_bare_min']}", m.get("edge_vs_bare"),
                 "edge_bench_neu_arms.md"),
            _row("Device runtime", "inputs bit-exact with the validated preprocessing",
                 f"{d['parity']['edge_bit_exact']}/{d['parity']['n']}", "all",
                 d["parity"]["edge_bit_exact"] == d["parity"]["n"], "edge_bench_neu_arms.md")]


def _quickstart() -> list[dict[str, Any]]:
    pages = {n: (d, a) for n, a in (("quickstart_stem.json", "tiny_cnn_s2"), ("quickstart_code.json", "shipped"),
                                    ("quickstart_epochs.json", "shipped")) if (d := _load(n))}
    if not pages:
        return []
    sums = [d["summary"][a] for d, a in pages.values()]
    names = ", ".join(n.replace(".json", ".md") for n in pages)
    ready = f"{sum(s['ready'] for s in sums)} of {sum(s['runs'] for s in sums)} runs"
    return [_row("Quick start", "READY verdict, shipped config, 5 seeds per page", ready, "every run",
                 all(s["ready"] == s["runs"] for s in sums), names),
            _row("Quick start", "median wall time per page, 2-core AMD EPYC",
                 _span((s["wall_median_s"] for s in sums), "{:.0f}", " s"), "<= 60 s",
                 all(s["wall_median_s"] <= 60 for s in sums), names)]


def _elpv() -> list[dict[str, Any]]:
    d = _load("recipe.json")
    if not d:
        return []
    out = []
    binary = _recipe_rows(d, ELPV_RECIPE, "elpv_binary")
    levels = _recipe_rows(d, ELPV_RECIPE, "elpv_levels")
    src = "recipe.md, elpv_* sections"
    if binary:
        acc = [r["accuracy"] for r in binary]
        frr = [r["op_false_reject_rate"] for r in binary]
        out += [_row("ELPV, ELPV recipe", f"binary test accuracy ({len(binary)} runs, <= 30 min each)", _span(acc),
                     ">= 0.90", max(acc) >= 0.90, src),
                _row("ELPV, ELPV recipe", "false-reject rate at the 5 % escape operating point",
                     _span([x * 100 for x in frr], "{:.0f}", " %"), "<= 25 %", min(frr) <= 0.25, src)]
    if levels:
        acc = [r["accuracy"] for r in levels]
        out.append(_row("ELPV, ELPV recipe", "4-level test accuracy", _span(acc), ">= 0.84", max(acc) >= 0.84, src))
    for dataset, label in (("elpv_binary", "ELPV binary"), ("neu_cut", "NEU, 5 classes cut to 10 %")):
        rows = _recipe_rows(d, SHIPPED, dataset, lambda s: SHIPPED[s])
        if rows:
            mr = [r["macro_recall"] for r in rows]
            out.append(_row(f"Shipped defaults, {label}", f"macro recall ({len(rows)} runs)", _span(mr), ">= 0.80",
                            min(mr) >= 0.80, "recipe.md, " + ", ".join(s for s in SHIPPED if s in d)))
    every = [r for s in d.values() for r in s.get("rows", [])]
    ours = [r for r in every if r["arm"] in ("auto", "stem_s2")]  # the recipes kdefect ships, on every data set
    before = [r for r in every if r["arm"] == "previous"]  # the defaults before issue 10, side by side
    bad, bad_before = (sum(bool(r.get("degenerate")) for r in rows) for rows in (ours, before))
    out.append(_row("Own-data recipes, all data sets", "degenerate models (a class never predicted)",
                    f"{bad} of {len(ours)} runs (the defaults before issue 10: {bad_before} of {len(before)})", "0",
                    bad == 0, "recipe.md, `auto` and `stem_s2` arms"))
    return out


def _detect() -> list[dict[str, Any]]:
    d = _load("detect_128.json")
    if not d:
        return []
    r = d["results"]["yolov8_128"]
    f, q, v = r["float"], r["int8"], r["verdict"]
    crazing = f["per_class"]["crazing"]["ap50"]
    src = "detect_128.md, yolov8_128"
    return [_row("NEU-DET detection", "YOLOv8 mAP@0.5, 60 min from scratch", f"{f['map50']:.3f}", ">= 0.70",
                 f["map50"] >= 0.70, src),
            _row("NEU-DET detection", "INT8 mAP@0.5 against float", f"{q['map50']:.3f} vs {f['map50']:.3f}",
                 "within 0.02", abs(q["map50"] - f["map50"]) <= 0.02, src),
            _row("NEU-DET detection", "crazing AP@0.5", f"{crazing:.3f}", ">= 0.40", crazing >= 0.40, src),
            _row("NEU-DET detection", "image escape rate, 95 % upper bound",
                 f"{v['escapes']}/{v['defective']}, bound {v['escape_upper95']:.1%}", "<= 2 %",
                 v["escape_upper95"] <= 0.02, src)]


SECTIONS = (_quickstart, _classify, _export, _edge, _elpv, _detect)


def rows() -> list[dict[str, Any]]:
    """Every row whose results file is present, in README order."""
    return [r for make in SECTIONS for r in make()]


def table() -> str:
    """The rows as a markdown table (the README's benchmark section starts with it)."""
    head = "| area | measure | result | target | status | source (tools/results/) |\n|---|---|---|---|---|---|\n"
    return head + "".join(f"| {r['area']} | {r['measure']} | {r['result']} | {r['target']} | {r['status']} | "
                          f"{r['source']} |\n" for r in rows())


if __name__ == "__main__":
    print(table())
