"""Issue-10 benchmark: the shipped defaults on data beyond NEU, ``auto`` recipe vs the previous defaults.

Side by side in one run, per data set, arms of ``configs/quickstart.yaml`` with only ``data.source``
and ``data.good_label`` changed:

- ``previous``: the defaults before the auto recipe (64x64 squash, plain shuffling, keep the epoch with
  the lowest validation loss);
- ``auto``: the shipped defaults (settings from the data profile, epoch kept on the safety metric);
- ``auto_loss``: ``auto`` with a class-balanced loss instead of balanced sampling (which of the two
  handles imbalance better decides the ``auto`` rule).

Data sets:
- ``synthetic``: the quick start itself (the built-in data);
- ``elpv_binary``: ELPV solar cells, good (p < 0.5) vs defective, Deitsch et al. (2019) / Buerhop-Lutz et al. (2018),
  CC BY-NC-SA 4.0 (``pip install elpv-dataset``; images are never committed);
- ``elpv_levels``: ELPV, 4 defect-probability levels (good = p 0);
- ``tile``: ``tools/tile_like.py``, a procedural stand-in for the set issue 10 was filed on (elongated grayscale
  parts of many sizes, small defects, 77 % good, rarest class 2.6 %); ``tile_small``: the same parts with a short
  side of 32-64 px and a long side of at most 128 px (they fit the default ``data.max_auto_size``);
- ``neu_cut``: NEU-DET with ``--neu-good`` as the good class (300 images) and the 5 other classes cut to 10 %
  (30 images each): a dominant good class on real steel images (class folders of symlinks in a temp dir).

Every run is calibrated and judged (READY / NOT READY).  Results: tools/results/recipe.json and .md.
Example: python tools/bench_recipe.py --datasets elpv_binary elpv_levels neu_cut
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, md_table, merge_results, section_lines, write_md

from kdefect.config import load_config

OUT = RESULTS / "recipe.json"
QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
PREVIOUS = ["data.image_size=[64, 64]", "data.resize=squash", "data.sampling=shuffle", "train.monitor=val_loss"]
ARMS = {"previous": PREVIOUS, "auto": [],
        # the alternative for imbalance: a class-balanced loss (Cui et al. 2019) instead of balanced sampling
        "auto_loss": ["data.sampling=shuffle", "loss.class_weights=effective"],
        # against overfitting on a small set: random crops, label smoothing, decoupled weight decay
        "regularised": ["data.augment.crop_min_area=0.6", "loss.label_smoothing=0.1", "train.optimizer=adamw",
                        "train.weight_decay=0.0005"],
        # ELPV cells all lie one way (their busbars run the same way): quarter turns make parts the line never shows
        "no_rot90": ["data.augment.rot90=false"],
        # balanced sampling forced on, whatever the imbalance (auto turns it on from 3:1)
        "balanced": ["data.sampling=balanced"],
        # twice the width (model.alpha 1.0; the ELPV config uses 0.5): short of features, or of capacity?
        "wide": ["model.alpha=1.0"],
        # the quick start's backbone before and after: a full-resolution first block, or a stride-2 first conv
        "tiny_cnn": ["model.backbone=tiny_cnn"],
        "stem_s2": ["model.backbone=tiny_cnn_s2"],
        # capacity: the from-scratch ResNet-18 layout at a quarter and half width instead of the 24k-weight CNN
        "resnet_q": ["model.backbone=resnet_small", "model.alpha=0.25"],
        "resnet_h": ["model.backbone=resnet_small", "model.alpha=0.5"],
        # the geometry rule: auto letterboxes varied, elongated parts; these force the other two resize modes
        "squash": ["data.resize=squash"],
        "letterbox": ["data.resize=letterbox"],
        "crop": ["data.resize=crop"],
        # the quick start's schedule cut from 40 to 30 epochs (cosine, to its floor by the last): what it costs here
        "epochs30": ["train.epochs=30"],
        # in-domain warm start: the same network first trained on NEU-DET (steel, 6 defect classes; a model a
        # plant may already have), then on this data from those weights. The NEU time counts in the budget.
        "neu_warm": []}
WARM_SHARE = 0.4  # neu_warm: the share of the config's train.time_budget_s spent on NEU-DET
COLUMNS = ("dataset", "arm", "image_size", "resize", "sampling", "monitor", "accuracy", "macro_recall", "degenerate",
           "op_escape_rate", "op_escape_upper95", "op_false_reject_rate", "review_share", "verdict",
           "train_accuracy", "val_accuracy", "epochs", "pretrain_seconds", "pretrain_accuracy", "wall_seconds")  # the fit-gap pair: only sections that have it
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def neu_cut(root: Path, good: str, keep: float = 0.1, seed: int = 0) -> Path:
    """Class folders of symlinks: ``good`` keeps all its images, every other class ``keep`` of them."""
    from kdefect.data.neu import neu_dir

    src = neu_dir()
    if src is None:
        raise SystemExit("NEU-DET not found: set KDEFECT_NEU_DIR")
    rng = np.random.default_rng(seed)
    for c in NEU_CLASSES:
        files = sorted((src / "images").glob(f"{c}_*.jpg"))
        if c != good:
            files = list(rng.choice(files, max(1, round(keep * len(files))), replace=False))
        out = root / ("good" if c == good else c)
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            (out / f.name).symlink_to(f)
    return root


def sources(names: list[str], tmp: Path, neu_good: str) -> dict[str, str]:
    table = {"elpv_binary": "elpv:binary", "elpv_levels": "elpv:levels", "synthetic": "synthetic"}
    out = {}
    for n in names:
        if n == "neu_cut":
            out[n] = str(neu_cut(tmp / "neu_cut", neu_good))
        elif n in ("tile", "tile_small"):
            from tile_like import write_tile_like

            small = {"short_range": (32, 64), "max_long": 128} if n == "tile_small" else {}
            out[n] = str(write_tile_like(tmp / n, **small))
        else:
            out[n] = table[n]
    return out


def run_arm(dataset: str, source: str, arm: str, runs_dir: str, extra: list[str], config: Path = QUICKSTART
            ) -> dict[str, Any]:
    from kdefect.engine import fit

    over = [f"runs_dir={runs_dir}", f"name={dataset}-{arm}", f"data.source={source}", "data.good_label=good",
            *ARMS[arm], *extra]
    cfg = load_config(config, over)
    t0 = time.perf_counter()
    pre: dict[str, Any] = {}
    if arm == "neu_warm":
        over, pre = _neu_pretrain(cfg, config, over, runs_dir, dataset, extra)
        cfg = load_config(config, over)
    run = fit(cfg, quiet=True)
    wall = time.perf_counter() - t0
    m, cal = run.read_json("metrics.json"), run.read_json("calibration.json")
    v, resolved = cal["verdict"], run.config()
    op = cal.get("operating_point", {}).get("test", {})
    return {
        "dataset": dataset, "arm": arm, "run": str(run.path), "overrides": over[3:],
        "image_size": resolved.data.image_size, "resize": resolved.data.resize, "sampling": resolved.data.sampling,
        "monitor": resolved.train.monitor, "test_n": m["n"], "accuracy": m["accuracy"],
        "macro_recall": m["macro_recall"], "per_class_recall": {c: r["recall"] for c, r in m["per_class"].items()},
        "argmax_escape_rate": m.get("escape_rate"), "argmax_false_reject_rate": m.get("false_reject_rate"),
        "degenerate": any(r["recall"] == 0 for r in m["per_class"].values()),
        "op_escape_rate": op.get("escape_rate"), "op_escape_upper95": (op.get("escape_rate_ci95") or [None, None])[1],
        "op_false_reject_rate": op.get("false_reject_rate"), "review_share": v["review_share"],
        "verdict": v["verdict"], "reasons": v["reasons"], "best_epoch": m["training"]["best_epoch"],
        "epochs": m["training"]["epochs_run"], "train_seconds": m["training"]["train_seconds"],
        "wall_seconds": round(wall, 1), **_fit_gap(run.path / "history.csv", m["training"]["best_epoch"]), **pre,
    }


def _neu_pretrain(cfg: Any, config: Path, over: list[str], runs_dir: str, dataset: str, extra: list[str]
                  ) -> tuple[list[str], dict[str, Any]]:
    """Train the same network on NEU-DET for ``WARM_SHARE`` of the budget; the overrides that start from it."""
    from kdefect.data.neu import neu_dir
    from kdefect.engine import fit

    if neu_dir() is None:
        raise SystemExit("neu_warm needs NEU-DET: set KDEFECT_NEU_DIR")
    budget = cfg.train.time_budget_s
    if not budget:
        raise SystemExit("neu_warm needs train.time_budget_s in the config: the NEU time counts inside it")
    size = cfg.data.image_size if cfg.data.image_size != "auto" else [cfg.data.max_auto_size] * 2
    pcfg = load_config(config, [f"runs_dir={runs_dir}", f"name={dataset}-neu-pretrain", "data.source=neu",
                                "data.good_label=null", "data.label_rule=filename", f"data.image_size={list(size)}",
                                "data.resize=squash", "data.sampling=shuffle",
                                f"train.time_budget_s={budget * WARM_SHARE:.0f}", *extra])
    prun = fit(pcfg, quiet=True)
    pm = prun.read_json("metrics.json")
    spent = float(pm["training"]["train_seconds"])
    print(f"  NEU-DET pre-training: accuracy {pm['accuracy']:.4f} in {spent:.0f} s", flush=True)
    return ([*over, f"model.weights={prun.path / 'model.keras'}", f"train.time_budget_s={max(budget - spent, 60):.0f}"],
            {"pretrain_seconds": round(spent, 1), "pretrain_accuracy": pm["accuracy"]})


def _fit_gap(history: Path, best_epoch: int | None) -> dict[str, float | None]:
    """Training vs validation accuracy at the kept epoch: a wide gap is overfitting, a low pair underfitting."""
    import csv

    with open(history, newline="") as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
    r = rows.get(best_epoch or 0) or (rows[max(rows)] if rows else {})
    get = lambda k: round(float(r[k]), 4) if r.get(k) not in (None, "") else None
    return {"train_accuracy": get("accuracy"), "val_accuracy": get("val_accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "neu_cut", "elpv_levels", "elpv_binary"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--neu-good", default="rolled-in_scale", help="NEU class that plays the good class in neu_cut")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override for both arms")
    ap.add_argument("--section", default="defaults", help="results section name")
    ap.add_argument("--config", type=Path, default=QUICKSTART, help="base config (default: the quick start)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kdefect.models.weights").setLevel(logging.INFO)  # neu_warm: show what loaded
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdefect-recipe-") as tmp:
        for name, src in sources(args.datasets, Path(tmp), args.neu_good).items():
            for arm in args.arms:
                r = run_arm(name, src, arm, str(Path(tmp) / "runs"), args.sets, args.config)
                rows.append(r)
                print(f"{name:12s} {arm:9s} acc {r['accuracy']:.4f} macro recall {r['macro_recall']:.4f} "
                      f"FRR@op {r['op_false_reject_rate']} {r['verdict']} ({r['wall_seconds']:.0f} s)", flush=True)
    data = merge_results(OUT, args.section, {"config": str(args.config), "neu_good": args.neu_good,
                                             "extra": args.sets, "rows": rows})
    write_page(data)


def write_page(data: dict[str, Any]) -> None:
    """recipe.md from every section of recipe.json (hand notes below the marker are kept)."""
    lines = ["# The shipped defaults beyond NEU: auto recipe vs previous defaults", "",
             "`configs/quickstart.yaml` with only `data.source` and `data.good_label` changed; `previous` adds "
             f"`{' '.join(PREVIOUS)}` (the defaults before the auto recipe). Test split 20 %, seed 0. "
             "`op_*`: at the operating point chosen on validation for a 1 % escape target. "
             "ELPV: Deitsch et al. 2019, Buerhop-Lutz et al. 2018 (CC BY-NC-SA 4.0).", ""]
    for sec, val in data.items():
        lines += [*section_lines(
                      sec, val, f"Base config: `{Path(val.get('config', QUICKSTART)).name}`, extra: "
                      f"`{' '.join(val['extra'])}`  ", f"Machine: {val['machine']['cpu']}, {val['machine']['cpu_count']} cores", ""),
                  md_table(val["rows"], [c for c in COLUMNS if any(c in r for r in val["rows"])]),
                  "Verdict reasons:", ""]
        lines += [f"- {r['dataset']} / {r['arm']}: " + ("; ".join(r["reasons"]) or "none") for r in val["rows"]]
        lines.append("")
    write_md(OUT.with_suffix(".md"), "\n".join(lines))


if __name__ == "__main__":
    main()
