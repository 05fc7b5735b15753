"""Trust benchmark: calibration, review share, leave-one-class-out OOD, Grad-CAM pointing, optional K-fold CV.

NEU (the lead's run, seed 0 split):
    python tools/bench_trust.py --run runs/neu_best --cv-config configs/neu_cls_X.yaml --cv-folds 5
Proof on a tiny synthetic run (trains its own run first; a few minutes on 2 cores):
    python tools/bench_trust.py --demo --out tools/results/trust_demo
Writes <out>.json and <out>.md (command, date, machine, every number).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from kdefect.utils.io import write_json, write_text

log = logging.getLogger("bench_trust")


def calibration_and_review(run: Path, target_risk: float) -> dict:
    from kdefect.core.run import RunDir
    from kdefect.trust.calibrate import apply_temperature, calibrate_run
    from kdefect.trust.outputs import split_outputs
    from kdefect.trust.uncertainty import review_share_for_risk

    cal = calibrate_run(run, target_risk=target_risk)
    test = split_outputs(RunDir.open(run), "test")
    p = apply_temperature(test["logits"], cal["temperature"])
    correct = p.argmax(1) == test["y"]
    return {"temperature": cal["temperature"], "val_ece_before": cal["ece_before"], "val_ece_after": cal["ece_after"],
            "test_ece_before": cal["test_ece_before"], "test_ece_after": cal["test_ece_after"],
            "test_accuracy": float(correct.mean()), "target_residual_error": target_risk,
            "test_review_share_oracle": review_share_for_risk(p.max(1), correct, target_risk),
            "val_threshold_on_test": cal["test_review"], "operating_point": cal.get("operating_point")}


def _train(cfg, x, y, k, epochs, seed, budget_s=None, flips=False):
    """Fit a classifier on arrays: cosine LR over the epochs (or the time budget), optional random flips."""
    from kdefect.engine.callbacks import CosineDecay, TimeBudget
    from kdefect.keras import keras, tf
    from kdefect.tasks.classify import build_classifier_from_config

    keras.utils.set_random_seed(seed)
    model = build_classifier_from_config(cfg, k)
    model.compile(keras.optimizers.Adam(cfg.train.learning_rate), "sparse_categorical_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if flips:
        ds = ds.map(lambda im, lab: (tf.image.random_flip_up_down(tf.image.random_flip_left_right(im)), lab))
    start = time.perf_counter()
    callbacks = [CosineDecay(epochs, budget_s, start=start)]
    if budget_s:
        callbacks.append(TimeBudget(budget_s, start=start))
    model.fit(ds.batch(32).prefetch(2), epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def _device_scores(model, x_train: np.ndarray, x_test: np.ndarray, work: Path) -> dict:
    """The same model exported as kdefect does with ``--ood-gate knn`` (INT8 PTQ, feature output): kNN and max-prob
    scores computed from the INT8 model's own outputs, as on the device."""
    from kdefect.edge.interpreter import TFLiteRunner
    from kdefect.export.feature_gate import device_features, device_knn, locate_outputs, with_features
    from kdefect.export.tflite import to_tflite
    from kdefect.trust import ood

    two = with_features(model)
    rep = x_train[np.random.default_rng(0).permutation(len(x_train))[:200]]
    path = to_tflite(two, work / "loco_int8.tflite", "int8", rep)
    main, feat = locate_outputs(path, two, x_train[0])
    f_train = device_features(path, x_train, feat)
    probs, f_test = TFLiteRunner(path, roles={"main": main, "features": feat}).run_all(x_test)
    return {"knn_int8": device_knn(f_train).score(f_test), "max_prob_int8": ood.max_prob_score(probs), "probs_int8": probs}


def leave_one_class_out(run: Path, epochs: int, size: int, seed: int, budget_s: float | None = None,
                        device: bool = False) -> dict:
    """Per held-out class: train on the other classes, AUROC of OOD scores (held-out vs known test images).

    ``device``: also export each model to INT8 with its feature output and score on the device's outputs.
    """
    import tempfile

    from kdefect.core.run import RunDir
    from kdefect.data.pipeline import load_images, resize_mode
    from kdefect.data.split import label_indices, load_split
    from kdefect.trust import ood
    from kdefect.trust.outputs import predict_heads

    r = RunDir.open(run)
    classes, _ = r.classes()
    cfg = r.config()
    cfg.data.image_size = [size, size]
    sp = load_split(run)
    data = {}
    for s in ("train", "test"):
        paths, names = sp[s]
        data[s] = (load_images(paths, (size, size), cfg.data.channels, resize=resize_mode(cfg.data)).astype(np.float32),
                   label_indices(classes, names))
    out = {}
    for h, name in enumerate(classes):
        t0 = time.time()
        keep = data["train"][1] != h
        remap = np.cumsum(np.arange(len(classes)) != h) - 1
        model = _train(copy.deepcopy(cfg), data["train"][0][keep], remap[data["train"][1][keep]], len(classes) - 1,
                       epochs, seed, budget_s=budget_s, flips=True)
        tr = predict_heads(model, data["train"][0][keep])
        te = predict_heads(model, data["test"][0])
        yt = data["test"][1]
        known = yt != h
        maha = ood.Mahalanobis.fit(tr["features"], remap[data["train"][1][keep]])
        from scipy.special import softmax

        scores = {"energy": ood.energy_score(te["logits"]), "max_prob": ood.max_prob_score(softmax(te["logits"], 1)),
                  "mahalanobis": maha.score(te["features"]),
                  "knn": ood.KNN.fit(tr["features"]).score(te["features"])}
        if device:
            with tempfile.TemporaryDirectory() as work:
                dev = _device_scores(model, data["train"][0][keep], data["test"][0], Path(work))
            out[name] = {"known_accuracy_int8": float((dev.pop("probs_int8")[known].argmax(1)
                                                       == remap[yt[known]]).mean())}
            scores.update(dev)
        else:
            out[name] = {}
        out[name].update({k: ood.held_out_auroc(v, yt, h) for k, v in scores.items()})
        out[name]["known_accuracy"] = float((te["logits"][known].argmax(1) == remap[yt[known]]).mean())
        log.info("held out %s: %s (%.0fs)", name, {k: round(v["auroc"], 3) for k, v in out[name].items()
                                                   if isinstance(v, dict)}, time.time() - t0)
    means = {k: float(np.mean([out[c][k]["auroc"] for c in classes])) for k in scores}
    return {"per_class": out, "mean_auroc": means, "epochs": epochs, "size": size, "budget_s": budget_s,
            "device": device}


def device_gate_agreement(run: Path, model: Path) -> dict:
    """Test split: the host's kNN flags (calibration.json ``feature_ood``, float features of model.keras) vs the
    device's (``model`` exported with ``--ood-gate knn``, run by kdefect-edge's EdgeClassifier on the image files)."""
    from scipy.stats import spearmanr

    from kdefect.core.run import RunDir
    from kdefect.data.split import label_indices, load_split
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.trust.calibrate import host_knn, load_calibration
    from kdefect.trust.outputs import split_outputs

    r = RunDir.open(run)
    gate = (load_calibration(r) or {}).get("feature_ood")
    if not gate:
        raise SystemExit(f"{run} has no feature_ood in calibration.json: run `kdefect calibrate {run}` first")
    test = split_outputs(r, "test")
    host = host_knn(r, int(gate["k"])).score(test["features"])
    host_flag = host > float(gate["threshold"])
    clf = EdgeClassifier(model)
    paths, names = load_split(run)["test"]
    dec = [clf.classify(p) for p in paths]
    dev = np.array([d.ood["score"] for d in dec])
    dev_flag = np.array([d.ood["flag"] for d in dec])
    classes = r.classes()[0]
    y = label_indices(classes, names)
    return {"model": str(model), "n": len(paths), "host_flag_share": float(host_flag.mean()),
            "device_flag_share": float(dev_flag.mean()), "flag_agreement": float((host_flag == dev_flag).mean()),
            "device_accuracy": float(np.mean([classes.index(d.label) == t for d, t in zip(dec, y, strict=True)])),
            "host_device_score_spearman": float(spearmanr(host, dev).statistic),
            "device_threshold": float(clf.rule.ood["threshold"]), "host_threshold": float(gate["threshold"])}


def gradcam_pointing(n_per_class: int, size: int, epochs: int, n_eval: int, seed: int, contrast: float = 2.0) -> dict:
    """Train a tiny CNN on kdefect's synthetic defects; share of Grad-CAM heat inside the planted boxes.

    ``contrast`` > 1 makes the defects learnable by a tiny model in seconds: the check is whether the
    explanation points at the defect, so it is also reported on the correctly classified images alone.
    """
    from kdefect.config import load_config
    from kdefect.data.synthetic import CLASSES, render_sample
    from kdefect.trust.explain import gradcam, heat_in_boxes

    rng = np.random.default_rng(seed)
    x = np.stack([render_sample(c, size, rng, contrast)[0] for _ in range(n_per_class) for c in CLASSES])
    x = x.astype(np.float32)
    y = np.tile(np.arange(len(CLASSES)), n_per_class)
    cfg = load_config(None, [f"data.image_size=[{size},{size}]", "train.learning_rate=0.003", "model.pooling=max"])
    model = _train(cfg, x, y, len(CLASSES), epochs, seed, flips=True)
    ev = [(ci, *render_sample(c, size, rng, contrast)) for _ in range(n_eval) for ci, c in enumerate(CLASSES)
          if c != "good"]
    xe = np.stack([e[1] for e in ev]).astype(np.float32)
    ye = np.array([e[0] for e in ev])
    right = np.asarray(model.predict(xe, verbose=0)).argmax(1) == ye
    cams = gradcam(model, xe, class_index=ye)  # explain the true defect class
    st = [heat_in_boxes(c, e[2]) for c, e in zip(cams, ev, strict=True)]

    def summary(mask: np.ndarray) -> dict:
        pick = [s for s, m in zip(st, mask, strict=True) if m]
        if not pick:
            return {}
        return {"n": len(pick), "heat_share_inside": float(np.mean([s["heat_share_inside"] for s in pick])),
                "box_area_share": float(np.mean([s["area_share"] for s in pick])),
                "pointing_hit_rate": float(np.mean([s["pointing_hit"] for s in pick])),
                "mean_inside_gt_outside": float(np.mean([s["mean_inside"] > s["mean_outside"] for s in pick]))}

    return {"n_images": len(ev), "size": size, "epochs": epochs, "train_images": len(x), "contrast": contrast,
            "defect_accuracy": float(right.mean()), **summary(np.ones(len(st), bool)),
            "correct_only": summary(right)}


def demo_run(root: Path) -> Path:
    from kdefect.config import load_config
    from kdefect.engine import fit

    cfg = load_config("configs/quickstart.yaml", [f"runs_dir={root}", "name=trust-demo", "train.epochs=6",
                                                  "data.synthetic.n_per_class=80"])
    return fit(cfg, quiet=True).path


def _markdown(res: dict) -> str:
    c = res["calibration"]
    lines = [f"# Trust benchmark ({res['date']})", "", f"Command: `{res['command']}`", f"Machine: {res['machine']}",
             f"Run: `{res['run']}`", "", "| quantity | value |", "|---|---|",
             f"| test accuracy | {100 * c['test_accuracy']:.2f}% |",
             f"| ECE before / after temperature scaling (test) | {100 * c['test_ece_before']:.2f}% / "
             f"{100 * c['test_ece_after']:.2f}% (T = {c['temperature']:.3f}) |",
             f"| ECE before / after (val) | {100 * c['val_ece_before']:.2f}% / {100 * c['val_ece_after']:.2f}% |",
             f"| review share for residual error <= {100 * c['target_residual_error']:.1f}% (test, oracle) | "
             f"{100 * c['test_review_share_oracle']:.1f}% |",
             f"| val-chosen threshold on test: review share / residual error | "
             f"{100 * c['val_threshold_on_test']['review_share']:.1f}% / "
             f"{100 * c['val_threshold_on_test']['residual_error']:.2f}% |"]
    if res.get("loco"):
        lo = res["loco"]
        names = {"energy": "energy", "max_prob": "max-prob", "mahalanobis": "Mahalanobis", "knn": "kNN",
                 "max_prob_int8": "max-prob INT8 (device)", "knn_int8": "kNN INT8 (device)"}
        keys = [k for k in names if k in lo["mean_auroc"]]
        budget = f", {lo['budget_s']:.0f} s budget" if lo.get("budget_s") else ""
        lines += ["", f"Leave-one-class-out OOD AUROC ({lo['epochs']} epochs max{budget}, {lo['size']} px; "
                      "known-class test accuracy per model in the last column):", "",
                  "| held-out class | " + " | ".join(names[k] for k in keys) + " | known acc |",
                  "|---" * (len(keys) + 2) + "|"]
        def acc(v: dict) -> str:
            return f"{v['known_accuracy']:.3f}" + (f" (INT8 {v['known_accuracy_int8']:.3f})"
                                                   if "known_accuracy_int8" in v else "")

        lines += [f"| {c} | " + " | ".join(f"{v[k]['auroc']:.3f}" for k in keys) + f" | {acc(v)} |"
                  for c, v in lo["per_class"].items()]
        m = lo["mean_auroc"]
        lines.append("| **mean** | " + " | ".join(f"**{m[k]:.3f}**" for k in keys) + " | |")
        for h in res.get("loco_history", []):  # earlier runs of the same protocol (retraining is not deterministic)
            lines.append(f"| mean, earlier run {h['date']} | " + " | ".join(
                f"{h['mean_auroc'][k]:.3f}" if k in h["mean_auroc"] else "-" for k in keys) + " | |")
    gates = res.get("device_gates") or ([res["device_gate"]] if res.get("device_gate") else [])
    for d in gates:
        lines += ["", f"kNN gate on the device (`{Path(d['model']).name}`, exported with `--ood-gate knn`, run by "
                      f"kdefect-edge on the {d['n']} test image files) vs the host gate of `kdefect calibrate`: "
                      f"flagged {100 * d['device_flag_share']:.1f}% vs {100 * d['host_flag_share']:.1f}%, "
                      f"same flag on {100 * d['flag_agreement']:.1f}% of parts, score rank correlation "
                      f"{d['host_device_score_spearman']:.3f}; device accuracy {100 * d['device_accuracy']:.2f}%"]
    if res.get("gradcam"):
        g = res["gradcam"]

        def pointing(d: dict) -> str:
            return (f"heat share inside box {100 * d['heat_share_inside']:.1f}% (box area {100 * d['box_area_share']:.1f}%), "
                    f"peak inside box {100 * d['pointing_hit_rate']:.1f}%, mean heat inside > outside "
                    f"{100 * d['mean_inside_gt_outside']:.1f}%")

        lines += ["", f"Grad-CAM pointing on synthetic defects ({g['n_images']} images, contrast {g.get('contrast', 1.0)}, "
                      f"defect accuracy {100 * g['defect_accuracy']:.1f}%): {pointing(g)}"]
        if g.get("correct_only"):
            lines += ["", f"On the {g['correct_only']['n']} correctly classified images: {pointing(g['correct_only'])}"]
    if res.get("cv"):
        a = res["cv"]["metrics"]["accuracy"]
        lines += ["", f"{res['cv']['folds']}-fold CV accuracy: {100 * a['mean']:.2f}% +- {100 * a['std']:.2f}%"
                      + (f" (config `{res['cv_config']}`, overrides `{' '.join(res['cv_set'])}`)"
                         if res.get("cv_config") else "")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="trained run folder (NEU seed-0 split)")
    ap.add_argument("--demo", action="store_true", help="train a tiny synthetic run first and benchmark it")
    ap.add_argument("--out", default="tools/results/trust", help="results path without extension")
    ap.add_argument("--target-risk", type=float, default=0.002)
    ap.add_argument("--loco-epochs", type=int, default=8)
    ap.add_argument("--loco-size", type=int, default=64)
    ap.add_argument("--loco-budget-s", type=float, help="training time budget per held-out class (cosine LR over it)")
    ap.add_argument("--no-loco", action="store_true")
    ap.add_argument("--loco-device", action="store_true",
                    help="also score each LOCO model as exported with --ood-gate knn (INT8, device outputs)")
    ap.add_argument("--gradcam-n", type=int, default=200, help="synthetic training images per class")
    ap.add_argument("--gradcam-epochs", type=int, default=12)
    ap.add_argument("--gradcam-size", type=int, default=64)
    ap.add_argument("--gradcam-contrast", type=float, default=2.0, help="synthetic defect strength (1 = realistic)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the parts of the existing results file that this invocation does not recompute")
    ap.add_argument("--cv-config", help="config for K-fold CV (expensive; off unless given)")
    ap.add_argument("--cv-folds", type=int, default=5)
    ap.add_argument("--cv-set", action="append", default=[], help="config override for CV")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-gate", type=Path, metavar="MODEL.tflite", action="append", default=[],
                    help="a model of --run exported with --ood-gate knn: compare its flags with the host gate's "
                         "(repeatable, e.g. the PTQ and the QAT export)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not a.run and not a.demo:
        ap.error("give --run RUN or --demo")
    t0 = time.time()
    run = a.run or demo_run(Path("runs"))
    res = {"command": "python " + " ".join(sys.argv), "date": dt.datetime.now().isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
           "run": str(run), "calibration": calibration_and_review(run, a.target_risk)}
    if not a.no_loco:
        res["loco"] = leave_one_class_out(run, a.loco_epochs, a.loco_size, a.seed, a.loco_budget_s, a.loco_device)
        res["loco"]["date"] = res["date"]
    if a.device_gate:
        res["device_gates"] = [device_gate_agreement(run, m) for m in a.device_gate]
    if a.gradcam_n > 0:
        res["gradcam"] = gradcam_pointing(a.gradcam_n, a.gradcam_size, a.gradcam_epochs, 20, a.seed,
                                          a.gradcam_contrast)
    if a.cv_config:
        from kdefect.config import load_config
        from kdefect.trust.cv import cross_validate

        res["cv"] = cross_validate(load_config(a.cv_config, a.cv_set), a.cv_folds, calibrate=True)
        res["cv_config"], res["cv_set"] = a.cv_config, a.cv_set
    res["wall_s"] = round(time.time() - t0, 1)
    if a.merge and Path(a.out + ".json").is_file():
        old = json.loads(Path(a.out + ".json").read_text())
        if "loco" in res and "loco" in old:  # a replaced LOCO run stays on record: run-to-run spread matters
            res["loco_history"] = [*old.get("loco_history", []), {
                "date": old["loco"].get("date", old.get("date", "").split(" ; ")[0]),
                "mean_auroc": old["loco"]["mean_auroc"], "budget_s": old["loco"].get("budget_s"),
                "size": old["loco"].get("size")}]
        if "device_gates" in res:
            old.pop("device_gate", None)  # superseded by the list
        res = {**old, **res, "command": old.get("command", "") + " ; then: " + res["command"],
               "date": old.get("date", "") + " ; " + res["date"]}
    write_json(a.out + ".json", res)
    write_text(a.out + ".md", _markdown(res))
    print(_markdown(res))
    print(json.dumps({"wall_s": res["wall_s"]}))


if __name__ == "__main__":
    main()
