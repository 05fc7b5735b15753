"""Benchmark: which QAT epoch to export, the last one or the one with the lowest validation loss (``KeepBest``).

QAT fine-tuning is short and not deterministic on CPU, so one run says little: each repetition trains both arms
from the same float model, alternating, and the INT8 test accuracy of every repetition is reported.

    python tools/bench_qat_select.py --run RUN --reps 3 --epochs 5 --out qat_select_neu
Writes tools/results/<out>.{json,md} with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kdefect.utils.io import write_json, write_text


def one(run_dir: Path, keep_best: bool, epochs: int, lr: float, work: Path, seed: int) -> dict:
    from kdefect.core.run import RunDir
    from kdefect.data.pipeline import load_images, make_dataset, resize_mode
    from kdefect.data.split import label_indices, load_split
    from kdefect.export.evaluate import run_tflite
    from kdefect.export.representative import stratified_indices
    from kdefect.export.tflite import to_tflite
    from kdefect.optimize import quantize_aware
    from kdefect.trust.outputs import load_model

    run = RunDir.open(run_dir)
    classes, _ = run.classes()
    cfg = run.config()
    cfg.data.resize = resize_mode(cfg.data)  # an old run's config (no resize key): squash
    size, ch = tuple(cfg.data.image_size), cfg.data.channels
    sp = load_split(run.path)
    tr_paths, tr_names = sp["train"]
    y_tr = label_indices(classes, tr_names)
    model = load_model(run.model_path)
    train_ds = make_dataset(list(tr_paths), y_tr, len(classes), cfg.data, training=True, seed=seed)
    va_paths, va_names = sp["val"]  # the validation split picks the QAT epoch, as `kdefect tflite --qat` does
    val_ds = make_dataset(list(va_paths), label_indices(classes, va_names), len(classes), cfg.data, training=False)
    t0 = time.perf_counter()
    q = quantize_aware(model, train_ds, epochs, lr, val_ds=val_ds if keep_best else None)
    rep = load_images([tr_paths[i] for i in stratified_indices(y_tr, 200, seed)], size, ch, resize=cfg.data.resize)
    path = to_tflite(q, work / f"qat_{'best' if keep_best else 'last'}.tflite", "int8", rep)
    te_paths, te_names = sp["test"]
    probs = run_tflite(path, load_images(te_paths, size, ch, resize=cfg.data.resize))
    y = label_indices(classes, te_names)
    return {"accuracy": float((probs.argmax(1) == y).mean()), "errors": int((probs.argmax(1) != y).sum()),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--out", default="qat_select")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    arms: dict[str, list[dict]] = {"last epoch": [], "lowest val loss (KeepBest)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.reps):
            for name, keep in (("last epoch", False), ("lowest val loss (KeepBest)", True)):
                arms[name].append(one(a.run, keep, a.epochs, a.learning_rate, Path(tmp), seed=r))
                logging.info("rep %d %s: %s", r + 1, name, arms[name][-1])
    res = {"command": "python " + " ".join(sys.argv), "date": dt.datetime.now().isoformat(timespec="minutes"),
           "machine": f"{platform.machine()} {platform.processor() or ''}, 2-core CPU".strip(), "run": str(a.run),
           "epochs": a.epochs, "learning_rate": a.learning_rate, "arms": arms}
    lines = [f"# QAT epoch selection ({res['date']})", "", f"Command: `{res['command']}`", f"Machine: {res['machine']}",
             "", f"INT8 (QAT, {a.epochs} epochs, lr {a.learning_rate:g}) test accuracy of run `{a.run}`, "
             f"{a.reps} repetitions, arms alternating:", "", "| arm | per repetition | mean | min |", "|---|---|---|---|"]
    for name, rows in arms.items():
        accs = [x["accuracy"] for x in rows]
        lines.append(f"| {name} | " + ", ".join(f"{100 * v:.2f}%" for v in accs)
                     + f" | {100 * statistics.mean(accs):.2f}% | {100 * min(accs):.2f}% |")
    out = Path("tools/results") / a.out
    write_json(out.with_suffix(".json"), res)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
