"""Copy the committed benchmark tables (tools/results/*.md) into README.md between its BENCHMARKS markers.

The README quotes results files verbatim, so every figure in it has a command, a machine and a date.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "results"
ORDER = [("recipe.md", "Own data beyond NEU: auto recipe, READY verdict, ELPV (issue 10)"),
         ("tta.md", "Averaged predictions on ELPV: flipped views (TTA) and an ensemble of seeds, same weights (issue 10)"),
         ("classify.md", "Classification on NEU-DET (issue 2)"), ("export_neu.md", "INT8 export on NEU-DET (2 QAT epochs)"),
         ("export_neu_qat5.md", "INT8 export on NEU-DET (5 QAT epochs)"),
         ("qat_select_neu.md", "Which QAT epoch to export"),
         ("edge_bench_neu.md", "On-device runtime"),
         ("edge_bench_neu_arms.md", "On-device runtime side by side: bare invoke, hand-written loop, kdefect-edge (issue 15)"),
         ("edge_bench_neu_knn_gate.md", "On-device runtime: cost of the kNN unknown-defect gate"), ("edge_aarch64.md", "aarch64 (Raspberry Pi) emulated check"),
         ("edge_bench_detect.md", "On-device runtime: the NEU-DET detector in kdefect-edge (issue 16)"),
         ("quickstart.md", "Quick start, repeated (issue 10)"),
         ("quickstart_epyc.md", "Quick start on a slower 2-core machine (issue 10)"),
         ("quickstart_stem.md", "Quick start: tiny_cnn vs tiny_cnn_s2 (stride-2 first convolution) side by side (issue 10)"),
         ("quickstart_overhead.md", "Quick start: resume snapshots every 30 s, no per-step callback cost, against the parent commit (issue 10)"),
         ("quickstart_code.md", "Quick start: this code against 94a9f3c, side by side (issue 10)"),
         ("quickstart_epochs.md", "Quick start: 40, 30 or 25 epochs side by side (issue 10)"),
         ("cli_errors.md", "First errors: a mistyped key or data path answered before TensorFlow loads (issue 10)"),
         ("cli_errors_backbone.md", "First errors: a mistyped backbone answered before TensorFlow loads"),
         ("callback_cost.md", "Training callbacks: seconds per quick start, per callback, against the parent commit"),
         ("first_step.md", "A fit's first epoch: one trace of the train step instead of two"),
         ("scale.md", "Scale: 50,000 images, packs, batch predict, two workers (issue 12)"),
         ("trust_neu.md", "Trust on NEU-DET (issue 6)"), ("detect.md", "Detection on NEU-DET (issue 5)"),
         ("detect_warm.md", "Detection: in-domain warm start vs scratch (issue 16)"),
         ("detect_warm60.md", "Detection: in-domain warm start at the 60-minute budget (issue 16)"),
         ("detect_rare.md", "Detection: rare classes, repeat-factor sampling on and off (issue 16)"),
         ("detect_rare_synthetic.md", "Detection: repeat-factor sampling on synthetic data (issue 16)"),
         ("detect_tricks.md", "Detection: training tricks on and off at one budget (issue 16)"),
         ("detect_160.md", "Detection: 160 px at the 60-minute budget, more epochs (issue 16)"),
         ("detect_128.md", "Detection: 128 px at the 60-minute budget, and NMS IoU 0.7 (issue 16)"),
         ("detect_128_epyc.md", "Detection: the 128 px config's 60 minutes on a slower 2-core machine (issue 16)"),
         ("anchor_coverage.md", "Detection: which NEU-DET boxes RetinaNet's anchors can reach (issue 16)"),
         ("detect_retina_anchors.md", "Detection: RetinaNet anchor shapes, sizes and match IoU (issue 16)")]


def section() -> str:
    spec = importlib.util.spec_from_file_location("kdefect_glance", ROOT / "tools" / "glance.py")
    glance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glance)  # by path: tools/ is no package, and PYTHONSAFEPATH keeps it off sys.path
    parts = ["### At a glance: each headline target against what was measured\n\n_Generated from the files named in "
             "the last column (`tools/glance.py`); each file holds the command, the machine and the date, and the "
             "reasons for every miss._\n\n" + glance.table()]
    for name, title in ORDER:
        f = RESULTS / name
        if not f.is_file():
            continue
        body = f.read_text(encoding="utf-8").strip()
        body = re.sub(r"^# .*\n", "", body)  # the file's own title becomes a sub-heading
        body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", body, flags=re.M)
        parts.append(f"### {title}\n\n_From `tools/results/{name}`._\n\n{body}\n")
    return "\n".join(parts)


def main() -> None:
    from kdefect.utils.io import write_text

    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = re.sub(r"<!-- BENCHMARKS:BEGIN -->.*<!-- BENCHMARKS:END -->",
                 lambda _: f"<!-- BENCHMARKS:BEGIN -->\n{section()}\n<!-- BENCHMARKS:END -->", text, flags=re.S)
    write_text(readme, new)


if __name__ == "__main__":
    main()
