"""Issue-2 benchmark: NEU-DET as 6-class classification, from scratch, on this CPU.

Suites (run separately; each merges its section into tools/results/classify.json):
  backbones   per-backbone table, with and without attention, each within a training budget
  best        the best configuration trained longer
  imbalance   two classes cut to 10% of their training images: CE vs weighted CE vs focal
  throughput  `kdefect fit` training images/s vs a hand-written tf_keras + tf.data loop, same model and data

Example: python tools/bench_classify.py backbones --budget-min 5
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, md_table, merge_results, write_md

from kdefect.config import load_config
from kdefect.data.neu import neu_dir

OUT = RESULTS / "classify.json"
BACKBONES = [  # (backbone, input size, alpha, attention, attention_in_blocks)
    ("tiny_cnn", 128, 1.0, "none", False),
    ("tiny_cnn", 128, 1.0, "se", False),
    ("mobilenet_v2", 96, 1.0, "none", False),
    ("mobilenet_v2", 96, 1.0, "cbam", False),
    ("resnet_small", 128, 0.5, "none", False),
    ("resnet_small", 128, 0.5, "cbam", True),
    ("densenet121", 96, 1.0, "none", False),
    ("densenet121", 96, 1.0, "se", False),
]


def run_fit(name: str, overrides: list[str], runs_dir: str) -> dict[str, Any]:
    from kdefect.engine import fit

    cfg = load_config(None, [f"runs_dir={runs_dir}", f"name={name}", "data.source=neu", "data.good_label=null", "data.label_rule=filename",
                             "model.weights=none", "seed=0", *overrides])
    t0 = time.perf_counter()
    run = fit(cfg, quiet=True)
    m = run.read_json("metrics.json")
    tr = m["training"]
    return {"name": name, "run": str(run.path), "overrides": overrides, "test_accuracy": m["accuracy"],
            "macro_recall": m["macro_recall"], "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()},
            "params": tr["params"], "train_seconds": tr["train_seconds"], "epochs": tr["epochs_run"],
            "best_epoch": tr["best_epoch"], "train_images_per_s": tr["train_images_per_s"],
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def _done_rows(section: str) -> dict[str, dict[str, Any]]:
    from kdefect.utils.io import read_json

    data = read_json(OUT) if OUT.is_file() else {}
    return {r["name"]: r for r in data.get(section, {}).get("rows", [])}


def suite_backbones(args: argparse.Namespace) -> None:
    done = _done_rows("backbones") if args.keep_done else {}
    rows = []
    for bb, size, alpha, att, in_blocks in BACKBONES:
        name = f"{bb}-{att}{'-blocks' if in_blocks else ''}-{size}"
        if name in done:
            rows.append(done[name])
            continue
        ov = [f"model.backbone={bb}", f"model.alpha={alpha}", f"model.attention={att}",
              f"model.attention_in_blocks={in_blocks}", f"data.image_size=[{size}, {size}]",
              f"train.epochs={args.max_epochs}", f"train.time_budget_s={args.budget_min * 60}",
              "train.learning_rate=0.002", "data.batch_size=32", f"model.pooling={'max' if bb == 'tiny_cnn' else 'avg'}"]
        rows.append(run_fit(name, ov, args.runs_dir))
        logging.info("%s: %.4f", name, rows[-1]["test_accuracy"])
        merge_results(OUT, "backbones", {"budget_min": args.budget_min, "rows": rows})
    write_report()


def suite_best(args: argparse.Namespace) -> None:
    base = list(args.set)
    if args.from_table:  # the most accurate row of the backbone table (ties: fewer parameters)
        rows = list(_done_rows("backbones").values())
        top = max(rows, key=lambda r: (r["test_accuracy"], -r["params"]))
        base = [o for o in top["overrides"] if not o.startswith(("train.epochs=", "train.time_budget_s="))] + base
        logging.info("best configuration from the table: %s (%.4f)", top["name"], top["test_accuracy"])
    ov = [*base, f"train.epochs={args.max_epochs}", f"train.time_budget_s={args.budget_min * 60}"]
    row = run_fit("best", ov, args.runs_dir)
    merge_results(OUT, "best", {"budget_min": args.budget_min, "target_accuracy": 0.99, "row": row,
                                "target_met": row["test_accuracy"] >= 0.99})
    write_report()


def suite_imbalance(args: argparse.Namespace) -> None:
    minority = ["crazing", "scratches"]
    base = [*args.set, "data.subsample={crazing: 0.1, scratches: 0.1}", f"train.epochs={args.max_epochs}",
            f"train.time_budget_s={args.budget_min * 60}"]
    variants = {"crossentropy": ["loss.name=crossentropy", "loss.class_weights=none"],
                "weighted_ce": ["loss.name=crossentropy", "loss.class_weights=effective"],
                "focal": ["loss.name=focal", "loss.class_weights=effective", "loss.gamma=2.0"]}
    rows = []
    for name, ov in variants.items():
        r = run_fit(f"imb-{name}", [*base, *ov], args.runs_dir)
        r["loss"] = name
        r["minority_recall"] = {c: r["per_class_recall"][c] for c in minority}
        r["minority_recall_mean"] = float(np.mean(list(r["minority_recall"].values())))
        rows.append(r)
        merge_results(OUT, "imbalance", {"minority": minority, "kept_fraction": 0.1, "rows": rows})
    write_report()


def suite_throughput(args: argparse.Namespace) -> None:
    from throughput_loop import compare

    merge_results(OUT, "throughput", compare(args))
    write_report()


def write_report() -> None:
    from kdefect.utils.io import read_json

    d = read_json(OUT)
    parts = ["# NEU-DET classification benchmark (from scratch, CPU)\n",
             "Source of truth: `classify.json` (same folder). Split: stratified 60/20/20, seed 0, labels from the "
             "file names (300 images per class); from scratch (`weights: none`), default augmentation.\n\n"
             "Load: the backbone table ran while test suites and other agents' work shared the same 2 cores, so its "
             "images/s and the epochs reached within each budget are lower bounds. Accuracy is the held-out test "
             "split (360 images).\n"]
    if "backbones" in d:
        b = d["backbones"]
        parts += [f"\n## Backbones ({b['budget_min']}-minute training budget each)\n\n`{b['command']}`  \n"
                  f"{b['date']} on {b['machine']['cpu']} ({b['machine']['cpu_count']} cores)\n\n",
                  md_table(b["rows"], ["name", "test_accuracy", "macro_recall", "params", "epochs",
                                       "train_seconds", "train_images_per_s"])]
    if "best" in d:
        b = d["best"]
        parts += [f"\n## Best configuration, up to {b['budget_min']} minutes\n\n`{b['command']}`  \n{b['date']}\n\n",
                  "Config: `" + " ".join(o for o in b["row"]["overrides"]) + "`\n\n",
                  md_table([b["row"]], ["name", "test_accuracy", "macro_recall", "epochs", "train_seconds"]),
                  f"\nTarget >= 0.99 test accuracy: **{'met' if b['target_met'] else 'missed'}**\n"]
    if "imbalance" in d:
        b = d["imbalance"]
        parts += [f"\n## Imbalance ({', '.join(b['minority'])} cut to 10% of training images)\n\n`{b['command']}`  \n"
                  f"{b['date']}\n\n", md_table(b["rows"], ["loss", "test_accuracy", "macro_recall",
                                                           "minority_recall_mean"])]
    if "throughput" in d:
        b = d["throughput"]
        parts += [f"\n## Training throughput\n\n`{b['command']}`  \n{b['date']}\n\n",
                  md_table(b["rows"], ["loop", "images_per_s"]),
                  f"\nRatio kdefect / plain loop: **{b['ratio']:.3f}** (target >= 0.95)\n"]
    write_md(RESULTS / "classify.md", "".join(parts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=["backbones", "best", "imbalance", "throughput", "report"])
    p.add_argument("--budget-min", type=float, default=10.0, help="training budget per model (minutes)")
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--runs-dir", default="/tmp/kdefect-bench-runs")
    p.add_argument("--set", action="append", default=[], help="config override for best/imbalance/throughput")
    p.add_argument("--from-table", action="store_true", help="best: start from the backbone table's top row")
    p.add_argument("--keep-done", action="store_true", help="backbones: keep rows already in the results file")
    p.add_argument("--epochs", type=int, default=3, help="throughput: epochs per loop")
    p.add_argument("--reps", type=int, default=2, help="throughput: alternating repetitions")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if neu_dir() is None:
        sys.exit("NEU-DET not found: set KDEFECT_NEU_DIR or place it at ../shared/datasets/neu-det")
    {"backbones": suite_backbones, "best": suite_best, "imbalance": suite_imbalance,
     "throughput": suite_throughput, "report": lambda a: write_report()}[args.suite](args)


if __name__ == "__main__":
    main()
