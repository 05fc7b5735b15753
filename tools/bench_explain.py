"""Explanation faithfulness benchmark: Grad-CAM, LIME, SHAP and occlusion, measured on the INT8 model.

Trains a tiny CNN on kdefect's synthetic defects (known boxes), exports it
INT8 and float32 (TFLite, with sidecars, as `kdefect tflite` does), then on
correctly classified defect images: pointing game and heat share inside the
box, deletion / insertion AUC (RISE) against a random order, and seconds per
image for the float and INT8 model.  Optionally the same causal metrics on
a few NEU images (``--neu-n``, needs ``KDEFECT_NEU_DIR``).

    nice -n 10 python tools/bench_explain.py --out tools/results/explain
Writes <out>.json and <out>.md (command, date, machine, every number).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import header, md_table

from kdefect.utils.io import write_json, write_text

log = logging.getLogger("bench_explain")
AGNOSTIC = ("lime", "shap", "occlusion")


def export_pair(model, x: np.ndarray, labels: list[str], work: Path) -> dict[str, Path]:
    """INT8 (uint8 I/O) and float32 TFLite files of ``model``, each with its sidecar."""
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.export.tflite import to_tflite

    out = {}
    for mode in ("int8", "float32"):
        path = to_tflite(model, work / mode / "model.tflite", mode, representative=x[:128],
                         input_type="uint8" if mode == "int8" else "float32",
                         output_type="uint8" if mode == "int8" else "float32")
        write_sidecar(path, Sidecar(sha256="", task="classify", labels=labels, quantization=mode,
                                    input=InputSpec(size=list(x.shape[1:3]), channels=int(x.shape[3]),
                                                    dtype="uint8" if mode == "int8" else "float32")))
        out[mode] = path
    return out


def batching(path: Path, x: np.ndarray) -> dict:
    """Seconds per perturbed image: one invoke per image (the device's loop) vs a resized batch input."""
    from kdefect.trust.model_fn import TFLiteProbs

    res = {}
    for b in (1, 32):
        fn = TFLiteProbs(path, batch=b)
        fn(x[:8])
        t0 = time.perf_counter()
        fn(x)
        res[f"batch_{fn.batch}_ms_per_image"] = round(1000 * (time.perf_counter() - t0) / len(x), 3)
    return res


def evaluate(fn, keras_model, images, classes, boxes, settings, methods, with_boxes: bool) -> dict:
    """Every method on every image: localisation (when boxes), deletion / insertion AUC, cost."""
    from kdefect.trust import faithfulness as F
    from kdefect.trust.saliency import explain_one

    if len(images) == 0:
        return {}
    per: dict[str, dict[str, list]] = {m: {"del": [], "ins": [], "hit": [], "hit1": [], "share": [],
                                           "area": [], "s": [], "calls": []} for m in (*methods, "random")}
    for i, (img, cls) in enumerate(zip(images, classes, strict=True)):
        for m in (*methods, "random"):
            if m == "random":
                heat, sec, calls = F.random_heat(img.shape, settings.seed + i), 0.0, 0
            else:
                s = explain_one(m, fn, img, int(cls), settings, keras_model)
                heat, sec, calls = s.heat, s.seconds, s.model_images
            c = F.causal_curves(fn, img, int(cls), heat, seed=settings.seed + i)
            r = per[m]
            r["del"].append(c["deletion_auc"])
            r["ins"].append(c["insertion_auc"])
            r["s"].append(sec)
            r["calls"].append(calls)
            if with_boxes:
                loc = F.localisation(heat, boxes[i])
                r["hit"].append(loc["pointing_hit"])
                r["hit1"].append(loc["pointing_hit_first"])
                r["share"].append(loc["heat_share_inside"])
                r["area"].append(loc["area_share"])
        log.info("image %d/%d done", i + 1, len(images))
    out = {}
    for m, r in per.items():
        out[m] = {"deletion_auc": F.summarize(r["del"]), "insertion_auc": F.summarize(r["ins"]),
                  "s_per_image": round(float(np.mean(r["s"])), 3), "model_calls_per_image": float(np.mean(r["calls"])),
                  "deletion_better_than_random_share": None}
        if with_boxes:
            out[m].update(pointing_hit_rate=round(float(np.mean(r["hit"])), 4),
                          pointing_hit_rate_first_pixel=round(float(np.mean(r["hit1"])), 4),
                          heat_share_inside=F.summarize(r["share"]), box_area_share=round(float(np.mean(r["area"])), 4))
    for m in methods:  # paired per image: the method's deletion AUC below the random order's
        out[m]["deletion_better_than_random_share"] = round(float(np.mean(np.less(per[m]["del"], per["random"]["del"]))), 4)
    return out


def timing(paths: dict[str, Path], images, classes, settings) -> dict:
    """Seconds and model calls per explanation, float32 vs INT8 TFLite, default settings."""
    from kdefect.trust.model_fn import TFLiteProbs
    from kdefect.trust.saliency import explain_one

    res = {}
    for kind, path in paths.items():
        fn = TFLiteProbs(path, batch=settings.batch)
        for m in AGNOSTIC:
            secs = [explain_one(m, fn, img, int(c), settings).seconds for img, c in zip(images, classes, strict=True)]
            res[f"{m}_{kind}_s"] = round(float(np.mean(secs)), 3)
    return res


def synthetic(a, work: Path, settings) -> dict:
    from bench_trust import _train

    from kdefect.config import load_config
    from kdefect.data.synthetic import CLASSES, render_sample
    from kdefect.trust.model_fn import TFLiteProbs

    rng = np.random.default_rng(a.seed)
    x = np.stack([render_sample(c, a.size, rng, a.contrast)[0] for _ in range(a.n_per_class) for c in CLASSES])
    y = np.tile(np.arange(len(CLASSES)), a.n_per_class)
    cfg = load_config(None, [f"data.image_size=[{a.size},{a.size}]", "train.learning_rate=0.003", "model.pooling=max"])
    t0 = time.perf_counter()
    model = _train(cfg, x.astype(np.float32), y, len(CLASSES), a.epochs, a.seed, budget_s=a.train_budget_s, flips=True)
    train_s = time.perf_counter() - t0
    paths = export_pair(model, x.astype(np.float32), list(CLASSES), work)
    ev = [(ci, *render_sample(c, a.size, rng, a.contrast)) for _ in range(a.n_eval) for ci, c in enumerate(CLASSES)
          if c != "good"]
    xe = np.stack([e[1] for e in ev]).astype(np.float32)
    ye = np.array([e[0] for e in ev])
    fn = TFLiteProbs(paths["int8"], batch=settings.batch)
    pred = fn(xe).argmax(1)
    right = np.nonzero(pred == ye)[0]
    log.info("INT8 defect accuracy %.3f (%d / %d); explaining the correct ones", (pred == ye).mean(), len(right), len(ye))
    from kdefect.trust.saliency import explain_one

    first = {m: round(explain_one(m, fn, xe[0], int(ye[0]), settings).seconds, 2) for m in ("lime", "shap")}
    log.info("first explanation in this process (SHAP: numba compiles its kernels once): %s s", first)
    res = evaluate(fn, model, xe[right], ye[right], [ev[i][2] for i in right], settings, a.methods, True)
    keras_acc = float((np.asarray(model.predict(xe, verbose=0)).argmax(1) == ye).mean())
    return {"size": a.size, "train_images": len(x), "epochs": a.epochs, "train_s": round(train_s, 1),
            "contrast": a.contrast, "eval_defect_images": len(ye), "int8_defect_accuracy": float((pred == ye).mean()),
            "float_defect_accuracy": keras_acc, "explained_correct": len(right), "methods": res,
            "first_call_s": first,
            "batching": batching(paths["int8"], xe), "timing": timing(paths, xe[right[:a.timing_n]],
                                                                       ye[right[:a.timing_n]], settings)}


def neu(a, settings) -> dict:
    """Pointing, heat share and deletion / insertion on a few NEU-DET images with a briefly trained tiny CNN."""
    from bench_trust import _train

    from kdefect.config import load_config
    from kdefect.data.neu import neu_class_of
    from kdefect.data.pipeline import load_images
    from kdefect.data.voc import parse_voc
    from kdefect.trust.model_fn import TFLiteProbs

    root = Path(a.neu_dir)
    xmls = sorted((root / "annotations").glob("*.xml"))
    classes = sorted({neu_class_of(f) for f in xmls})
    per_class = {c: [f for f in xmls if neu_class_of(f) == c] for c in classes}
    rng = np.random.default_rng(a.seed)
    n_test = a.neu_n // len(classes) + 1
    recs, y, is_test = [], [], []
    for ci, c in enumerate(classes):
        pick = rng.permutation(len(per_class[c]))[:a.neu_train_per_class + n_test]
        for j, k in enumerate(pick):
            recs.append(parse_voc(per_class[c][k]))
            y.append(ci)
            is_test.append(j >= a.neu_train_per_class)
    x = load_images([str(r.image_path) for r in recs], (a.size, a.size), 3).astype(np.float32)
    y, is_test = np.asarray(y), np.asarray(is_test)
    test, train = np.nonzero(is_test)[0][:a.neu_n], np.nonzero(~is_test)[0]
    cfg = load_config(None, [f"data.image_size=[{a.size},{a.size}]", "train.learning_rate=0.003", "model.pooling=max"])
    t0 = time.perf_counter()
    model = _train(cfg, x[train], y[train], len(classes), a.epochs, a.seed, budget_s=a.train_budget_s, flips=True)
    train_s = time.perf_counter() - t0
    fn = TFLiteProbs(export_pair(model, x[train], classes, Path(a.work) / "neu")["int8"], batch=settings.batch)
    pred = fn(x[test]).argmax(1)
    right = test[pred == y[test]]
    boxes = [recs[i].boxes * np.array([a.size / recs[i].width, a.size / recs[i].height] * 2, np.float32) for i in right]
    res = evaluate(fn, model, x[right], y[right], boxes, settings, a.methods, True)
    return {"root": str(root), "classes": classes, "train_images": len(train), "train_s": round(train_s, 1),
            "test_images": len(test), "int8_accuracy": float((pred == y[test]).mean()), "explained_correct": len(right),
            "methods": res}


def markdown(res: dict) -> str:
    s = res["synthetic"]
    lines = [f"# Explanation faithfulness ({res['date']})", "", f"Command: `{res['command']}`",
             f"Machine: {res['machine']['machine']}, {res['machine']['cpu_count']} cores ({res['machine']['cpu']}); "
             + (f"measured **under contention** ({res['contention']}), so the seconds are upper bounds."
                if res.get("contention") else "measured on the otherwise idle machine."), "",
             f"Settings: `{res['settings']}`", "",
             f"## Synthetic defects with known boxes ({s['size']} px)", "",
             f"Tiny CNN ({s['train_images']} training images, {s['epochs']} epochs, contrast {s['contrast']}); "
             f"defect accuracy INT8 {100 * s['int8_defect_accuracy']:.1f}% / float {100 * s['float_defect_accuracy']:.1f}% "
             f"on {s['eval_defect_images']} images; the {s['explained_correct']} INT8-correct ones are explained "
             "(their true class). Grad-CAM runs on the float Keras model (it needs gradients); every causal metric "
             "is computed on the INT8 model.", ""]
    lines.append(md_table(_rows(s["methods"], True), ["method", "pointing", "pointing (raster argmax)", "heat in box", "box area", "deletion AUC",
                                                      "del < random", "insertion AUC", "s/image", "calls/image"]))
    b, t = s["batching"], s["timing"]
    lines += ["", "Deletion AUC: lower is better; insertion AUC: higher is better (mean ± std over images; "
              "'del < random' = share of images where the method's deletion AUC beats the random order's).", "",
              "## Cost per explanation (default settings)", "",
              md_table([{"method": m, "float32 s": t[f"{m}_float32_s"], "int8 s": t[f"{m}_int8_s"]} for m in AGNOSTIC],
                       ["method", "float32 s", "int8 s"]), "",
              f"Interpreter batching (INT8, ms per perturbed image): {b}", "",
              f"The first LIME / SHAP explanation in a process costs {s['first_call_s']} s (SHAP: numba compiles "
              "its kernels once per process); the table above is warm.", ""]
    if res.get("neu"):
        n = res["neu"]
        lines += [f"## NEU ({n['explained_correct']} correctly classified of {n['test_images']} test images, INT8 "
                  f"accuracy {100 * n['int8_accuracy']:.1f}%; NEU-DET boxes, which often cover most of the image)", "",
                  md_table(_rows(n["methods"], True), ["method", "pointing", "pointing (raster argmax)", "heat in box", "box area", "deletion AUC",
                                                       "del < random", "insertion AUC", "s/image", "calls/image"]), ""]
    elif res.get("neu_skipped"):
        lines += ["## NEU", "", f"Not run: {res['neu_skipped']}", ""]
    return "\n".join(lines) + "\n"


def _rows(methods: dict, boxes: bool) -> list[dict]:
    def ms(d):
        return f"{d['mean']:.3f} ± {d['std']:.3f}" if d.get("n") else "n/a"

    rows = []
    for m, r in methods.items():
        row = {"method": m, "deletion AUC": ms(r["deletion_auc"]), "insertion AUC": ms(r["insertion_auc"]),
               "del < random": "" if r["deletion_better_than_random_share"] is None
               else f"{100 * r['deletion_better_than_random_share']:.0f}%",
               "s/image": r["s_per_image"], "calls/image": round(r["model_calls_per_image"])}
        if boxes:
            row.update({"pointing": f"{100 * r['pointing_hit_rate']:.1f}%",
                        "pointing (raster argmax)": f"{100 * r.get('pointing_hit_rate_first_pixel', float('nan')):.1f}%",
                        "heat in box": f"{100 * r['heat_share_inside']['mean']:.1f}%",
                        "box area": f"{100 * r['box_area_share']:.1f}%"})
        rows.append(row)
    return rows


def main() -> None:
    import kdefect.keras  # noqa: F401  (the Keras 2 switch, before _bench.header() imports TensorFlow)
    from kdefect.data.neu import neu_dir
    from kdefect.trust.saliency import ExplainSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tools/results/explain")
    ap.add_argument("--work", default="runs/bench-explain")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n-per-class", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-budget-s", type=float, default=120)
    ap.add_argument("--contrast", type=float, default=2.0)
    ap.add_argument("--n-eval", type=int, default=6, help="eval images per defect class (4 defect classes)")
    ap.add_argument("--timing-n", type=int, default=4)
    ap.add_argument("--methods", nargs="+", default=["gradcam", "lime", "shap", "occlusion"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--evals", type=int, default=500)
    ap.add_argument("--segments", type=int, default=None, help="superpixels for LIME/SHAP (default: the library's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contention", default="", help="say in the results what else shared the CPU (seconds are then upper bounds)")
    ap.add_argument("--neu-n", type=int, default=0, help="NEU test images (0 = skip)")
    ap.add_argument("--neu-train-per-class", type=int, default=60)
    ap.add_argument("--neu-dir", default=str(neu_dir() or ""), help="NEU-DET root (default $KDEFECT_NEU_DIR)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    settings = ExplainSettings(seed=a.seed, lime_samples=a.samples, shap_evals=a.evals,
                               **({"segments": a.segments} if a.segments else {}))
    res = {**header(), "settings": settings.to_dict(), "contention": a.contention}
    res["synthetic"] = synthetic(a, Path(a.work), settings)
    if a.neu_n > 0:
        if a.neu_dir and Path(a.neu_dir).is_dir():
            res["neu"] = neu(a, settings)
        else:
            res["neu_skipped"] = f"no NEU folder at {a.neu_dir}"
    else:
        res["neu_skipped"] = "--neu-n 0 (time budget)"
    write_json(Path(a.out + ".json"), res)
    write_text(Path(a.out + ".md"), markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
