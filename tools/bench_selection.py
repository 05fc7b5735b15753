"""Which epoch to keep: the selection rules side by side, replayed on one training run per data set.

Why: ``train.monitor: auto`` keeps the epoch with the lowest validation false-reject rate at the escape target.
On real data with overlapping classes that figure rests on the few most good-looking defective parts of the
validation split (at a 1 % target and 165 defective parts: the second one), so it jumps from epoch to epoch and
the epoch kept can be an early, undertrained one (ELPV with the quick-start defaults kept epoch 6 of 40).

One ``kdefect fit`` per data set (the quick-start config with only ``data.source`` and ``data.good_label``
changed, as in ``bench_recipe.py``) records the model's probabilities on the validation and the test split after
every epoch. Each rule then picks an epoch from the validation records alone, and that epoch is judged on test
with the operating point chosen on validation, as ``kdefect calibrate`` does (temperature left out: it does not
reorder P(good) in the binary case and barely does otherwise). So every rule is measured on the same training
run, side by side. ``oracle`` (the epoch with the lowest test false-reject rate at the operating point) is shown
as a bound, not a rule.

Example: python tools/bench_selection.py --datasets elpv_binary elpv_levels neu_cut synthetic
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, md_table, merge_results, section_lines, write_md
from bench_recipe import QUICKSTART, sources

from kdefect.config import load_config

OUT = RESULTS / "selection.json"
TAIL = 10  # the fewest defective validation parts a tail statistic may rest on (the candidate rule)


def frr_at(p_good: np.ndarray, y: np.ndarray, gi: int, allowed: int) -> float:
    """False-reject rate at the lowest threshold that lets at most ``allowed`` defective parts pass."""
    d = np.sort(p_good[y != gi])[::-1]
    g = p_good[y == gi]
    if not len(g) or allowed >= len(d):
        return 0.0
    return float((g <= d[allowed]).mean())


def val_stats(p: np.ndarray, y: np.ndarray, gi: int, target: float) -> dict[str, float]:
    """What each rule reads from one epoch's validation probabilities."""
    from kdefect.trust.ood import auroc

    k = p.shape[1]
    pred = p.argmax(1)
    recall = [(pred[y == c] == c).mean() for c in range(k) if (y == c).any()]
    n_bad = int((y != gi).sum())
    a_t = math.floor(target * n_bad + 1e-6)
    pg = p[:, gi]
    return {"loss": float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()),
            "macro_recall": float(np.mean(recall)), "accuracy": float((pred == y).mean()),
            "frr_exact": frr_at(pg, y, gi, a_t),
            f"frr_floor{TAIL}": frr_at(pg, y, gi, max(a_t, TAIL)),
            f"frr_band{TAIL}": float(np.mean([frr_at(pg, y, gi, a) for a in range(a_t, max(a_t, TAIL) + 1)])),
            "auc": auroc(pg[y != gi], pg[y == gi])}  # P(a good part scores above a defective one)


# rule -> (primary key, sign: +1 lower is better); ties go to macro recall, then the loss (as kdefect's KeepBest)
RULES = {"val_loss": ("loss", 1.0), "val_macro_recall": ("macro_recall", -1.0),
         "frr_exact (shipped)": ("frr_exact", 1.0), f"frr_floor{TAIL}": (f"frr_floor{TAIL}", 1.0),
         f"frr_band{TAIL}": (f"frr_band{TAIL}", 1.0), "val_auc": ("auc", -1.0)}


def pick(stats: list[dict[str, float]], key: str, sign: float) -> int:
    return min(range(len(stats)), key=lambda e: (sign * stats[e][key], -stats[e]["macro_recall"], stats[e]["loss"],
                                                 e))


def judge(pv: np.ndarray, yv: np.ndarray, pt: np.ndarray, yt: np.ndarray, gi: int, target: float) -> dict[str, Any]:
    """Test figures of one epoch at the operating point chosen on validation."""
    from kdefect.trust.operating_point import choose_threshold, evaluate_threshold

    thr = choose_threshold(pv[:, gi], yv, gi, target)
    op = evaluate_threshold(pt, yt, gi, thr)
    pred = pt.argmax(1)
    k = pt.shape[1]
    st = val_stats(pt, yt, gi, 0.05)
    return {"test_accuracy": float((pred == yt).mean()),
            "test_macro_recall": float(np.mean([(pred[yt == c] == c).mean() for c in range(k) if (yt == c).any()])),
            "test_op_escape_rate": op["escape_rate"], "test_op_false_reject_rate": op["false_reject_rate"],
            # the ranking itself, free of how well a validation threshold transfers: AUC and the false-reject rate
            # at a 5 % escape rate set on test
            "test_auc": st["auc"], "test_frr_at_5pct": st["frr_exact"]}


def record(dataset: str, source: str, runs_dir: Path, extra: list[str]) -> dict[str, Any]:
    """Train once with a callback that keeps the val and test probabilities of every epoch."""
    from kdefect.core.run import RunDir
    from kdefect.engine import fit, trainer
    from kdefect.keras import keras
    from kdefect.tasks.outputs import split_images

    probs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    labels: dict[str, np.ndarray] = {}

    class Recorder(keras.callbacks.Callback):
        def __init__(self, run_path: Path) -> None:
            super().__init__()
            self.run_path, self.images = run_path, {}

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not self.images:
                run = RunDir.open(self.run_path)
                for s in probs:
                    _, labels[s], self.images[s] = split_images(run, s)
            for s in probs:
                probs[s].append(self.model.predict(self.images[s], batch_size=64, verbose=0))

    original = trainer.standard_callbacks

    def with_recorder(*args: Any, **kw: Any) -> Any:
        kw["before_best"] = [*(kw.get("before_best") or []), Recorder(Path(args[2]).parent)]
        return original(*args, **kw)

    over = [f"runs_dir={runs_dir}", f"name={dataset}", f"data.source={source}", "data.good_label=good", *extra]
    cfg = load_config(QUICKSTART, over)
    trainer.standard_callbacks = with_recorder
    try:
        run = fit(cfg, quiet=True)
    finally:
        trainer.standard_callbacks = original
    classes, good = run.classes()
    resolved = run.config()
    return {"dataset": dataset, "overrides": over[3:], "classes": classes, "good_index": classes.index(good),
            "target_escape": resolved.trust.target_escape, "val_y": labels["val"], "test_y": labels["test"],
            "val": np.stack(probs["val"]), "test": np.stack(probs["test"]),
            "kept_by_fit": run.read_json("metrics.json")["training"]["best_epoch"]}


def analyse(rec: dict[str, Any]) -> list[dict[str, Any]]:
    gi, target = rec["good_index"], rec["target_escape"]
    yv, yt = rec["val_y"], rec["test_y"]
    stats = [val_stats(p, yv, gi, target) for p in rec["val"]]
    tests = [judge(pv, yv, pt, yt, gi, target) for pv, pt in zip(rec["val"], rec["test"])]
    rows = []
    choices = {rule: pick(stats, key, sign) for rule, (key, sign) in RULES.items()}
    choices["last epoch"] = len(stats) - 1
    choices["oracle (test, a bound)"] = min(range(len(tests)), key=lambda e: tests[e]["test_op_false_reject_rate"])
    for rule, e in choices.items():
        rows.append({"dataset": rec["dataset"], "rule": rule, "epoch": e + 1, "of": len(stats),
                     "val_frr_exact": stats[e]["frr_exact"], "val_auc": stats[e]["auc"], **tests[e]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["elpv_binary", "elpv_levels", "neu_cut", "synthetic"])
    ap.add_argument("--neu-good", default="rolled-in_scale")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override")
    ap.add_argument("--section", default="quickstart_defaults")
    ap.add_argument("--keep", default=str(Path(tempfile.gettempdir()) / "kdefect-selection-records"),
                    help="where each data set's recorded probabilities are kept (outside the repo: ELPV is NC-licensed)")
    ap.add_argument("--reuse", action="store_true", help="re-analyse the records in --keep instead of training")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    kept = {}
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdefect-selection-") as tmp:
        for name in args.datasets:
            saved = keep / f"{name}.npz"
            if args.reuse and saved.is_file():  # re-analyse a recorded run without training again
                with np.load(saved, allow_pickle=False) as z:
                    rec = {k: z[k] for k in z.files}
                rec.update({k: rec[k].item() for k in ("dataset", "good_index", "target_escape", "kept_by_fit")})
            else:
                src = sources([name], Path(tmp), args.neu_good)[name]
                rec = record(name, src, Path(tmp) / "runs", args.sets)
                np.savez_compressed(saved, **{k: np.asarray(v) for k, v in rec.items() if k != "overrides"})
            kept[name] = rec["kept_by_fit"]
            new = analyse(rec)
            rows += new
            for r in new:
                print(f"{name:12s} {r['rule']:24s} epoch {r['epoch']:3d}/{r['of']} test acc {r['test_accuracy']:.4f} "
                      f"macro recall {r['test_macro_recall']:.4f} FRR@op {r['test_op_false_reject_rate']:.4f} "
                      f"escape {r['test_op_escape_rate']:.4f} test AUC {r['test_auc']:.4f} "
                      f"FRR@5% {r['test_frr_at_5pct']:.4f}", flush=True)
            data = merge_results(OUT, args.section, {"extra": args.sets, "tail": TAIL, "kept_by_fit": kept,
                                                     "rows": rows})
            write_page(data)


COLUMNS = ["dataset", "rule", "epoch", "of", "val_frr_exact", "val_auc", "test_accuracy", "test_macro_recall",
           "test_op_false_reject_rate", "test_op_escape_rate", "test_auc", "test_frr_at_5pct"]


def write_page(data: dict[str, Any]) -> None:
    lines = ["# Which epoch to keep: selection rules replayed on one training run per data set", "",
             "Each rule picks an epoch from the validation split's records; that epoch is judged on the test split at "
             "the operating point chosen on validation (the run's `trust.target_escape`). `frr_exact` is the "
             "shipped `val_frr_at_escape`; `frr_floorN` the false-reject rate at the escape target or at N escaped "
             "validation parts, whichever is looser; `frr_bandN` its mean over the escape counts from the target's "
             "to N; `oracle` picks on test (a bound, not a rule). ELPV: Deitsch et al. 2019, Buerhop-Lutz et al. "
             "2018 (CC BY-NC-SA 4.0).", ""]
    for sec, val in data.items():
        lines += [*section_lines(sec, val, f"Machine: {val['machine']['cpu']}, {val['machine']['cpu_count']} cores  ",
                                 f"Extra overrides: `{' '.join(val['extra'])}`; epoch the fit itself kept: "
                                 f"{val['kept_by_fit']}", ""),
                  md_table(val["rows"], COLUMNS)]
    write_md(OUT.with_suffix(".md"), "\n".join(lines))


if __name__ == "__main__":
    main()
