"""``export_run``: the whole ``kdefect tflite`` flow over the per-step functions.

run folder (or a user's model) -> optional distill / prune / QAT on the run's
training split -> TFLite conversion with stratified representative data ->
sidecar (labels, input spec, thresholds, sha256) -> optional Edge TPU report
and compilation. Each step is also usable alone (see ``kdefect.export``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.calibration import load_calibration, thresholds_from
from kdefect.core.run import RunDir
from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
from kdefect.edge.preprocess import resize_mode
from kdefect.errors import ExportError
from kdefect.export.litert_info import model_io, weight_sparsity
from kdefect.export.representative import stratified_indices
from kdefect.export.spec import ExportSpec
from kdefect.export.tflite import input_shape_of, to_tflite
from kdefect.keras import keras, tfmot
from kdefect.tasks.base import Task, get_task
from kdefect.tasks.heads import load_model

log = logging.getLogger(__name__)


@dataclass
class _Source:
    model: Any
    run: Any = None
    origin: str = ""


@dataclass
class _Data:
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    good_label: str | None
    data_cfg: Any


# what an export reads from a run: a change to any of these since training refuses the export
_EXPORT_INPUTS = ("model.keras", "config.yaml", "classes.json", "calibration.json")


def verified_run(path: str | Path) -> Any:
    """``RunDir.open`` + ``verify_manifest``: refuse a run whose model or data lists changed since training.

    Why: a model.keras swapped into a run folder would otherwise be exported with a fresh, valid sidecar
    (and signature).  A run without a manifest (made by hand or by an old kdefect) gets a warning.
    """
    from kdefect.core.run import MANIFEST, RunDir

    rd = RunDir.open(path)
    if not (rd.path / MANIFEST).is_file():
        log.warning("run '%s' has no %s: cannot check that its model is the one trained there.", rd.path, MANIFEST)
        return rd
    bad = rd.verify_manifest()
    # a deleted calibration.json is left to the readiness check ("not calibrated"), which refuses it too
    used = [f for f in bad if (f in _EXPORT_INPUTS or f.startswith("split/"))
            and not (f == "calibration.json" and not (rd.path / f).exists())]
    if used:
        raise ExportError(f"run '{rd.path}' changed since training: {', '.join(used)} differ(s) from {MANIFEST}, "
                          "so the export would ship a model that was never validated there. Restore the files, or "
                          "train (and calibrate) again.")
    if bad:
        log.warning("run '%s': %s changed since training (not used by the export).", rd.path, ", ".join(bad))
    return rd


def _open_source(source: Any, run: Any = None, trust_model: bool = False) -> _Source:
    from kdefect.export.saved_model import load_model_any

    run_obj = verified_run(run) if run is not None else None
    if isinstance(source, keras.Model):
        return _Source(source, run_obj, source.name)
    p = Path(source)
    if p.is_dir() and (p / "config.yaml").is_file():
        rd = verified_run(p)
        if not rd.model_path.is_file():
            raise ExportError(f"run '{p}' has no model.keras: the run did not finish. Run `kdefect fit` again.")
        return _Source(load_model(rd.model_path), run_obj or rd, str(p))
    if p.is_dir() and not (p / "saved_model.pb").is_file():
        raise ExportError(
            f"'{p}' is not a kdefect run folder (it has no config.yaml) nor a SavedModel (no saved_model.pb). "
            "A run folder is what `kdefect fit` writes, runs/NAME/ with config.yaml, model.keras, metrics.json, "
            "classes.json, split/ and calibration.json; pass one (`kdefect tflite runs/NAME`) or your own "
            "model file with --model.")
    return _Source(load_model_any(p, trust=trust_model), run_obj, str(p))


def _load_data(src: _Source, data: Any, size: tuple[int, int], channels: int, resize: str = "squash"
               ) -> _Data | None:
    """Training images + labels from the run's split, or from a class-per-folder ``data`` folder.

    ``resize``: the model's resize mode, stored in the returned ``data_cfg`` (its ``auto`` is resolved).
    """
    from kdefect.config import Config

    if src.run is not None and data is None:
        from kdefect.data.split import label_indices, load_split

        classes, good = src.run.classes()
        paths, names = load_split(src.run.path)["train"]
        cfg = src.run.config()
        cfg.data.resize = resize
        return _Data(list(paths), label_indices(classes, names), classes, good, cfg.data)
    if data is None:
        return None
    from kdefect.data.sources import index_dataset

    cfg = Config()
    cfg.data.source, cfg.data.image_size, cfg.data.channels = str(data), list(size), channels
    cfg.data.resize = resize
    index = index_dataset(cfg.data)
    good = "good" if "good" in index.classes else None
    return _Data(list(index.paths), np.asarray(index.labels, int), list(index.classes), good, cfg.data)


def _train_modes(run: Any) -> list[str]:
    """The colour modes of a run's images (its ``data_profile.json``), which the device then accepts; [] if unknown."""
    if run is None or not (run.path / "data_profile.json").is_file():
        return []
    return sorted((run.read_json("data_profile.json").get("colour") or {}).get("modes") or {})


def _need(data: _Data | None, what: str) -> _Data:
    if data is None or not data.paths:
        raise ExportError(f"{what} needs training images: export a run folder, or pass --run RUN / --data FOLDER "
                          "(class sub-folders) with your model.")
    return data


def representative_images(data: _Data, size: tuple[int, int], channels: int, n: int = 200, seed: int = 0,
                          resize: str | None = None) -> np.ndarray:
    """``n`` training images drawn stratified by class, uint8 (N, H, W, C).

    ``resize``: squash | letterbox | crop; None: ``data.data_cfg``'s (an old run's ``auto`` is squash).
    """
    from kdefect.data.pipeline import load_images

    idx = stratified_indices(data.labels, n, seed)
    if len(idx) == 0:
        raise ExportError("the representative set is empty: the training split has no images. Check split/train.txt.")
    return load_images([data.paths[i] for i in idx], size, channels, resize=resize or resize_mode(data.data_cfg))


def _train_ds(data: _Data, size: tuple[int, int], channels: int, seed: int) -> Any:
    from kdefect.data.pipeline import make_dataset

    cfg = data.data_cfg
    cfg.image_size, cfg.channels, cfg.resize = list(size), channels, resize_mode(cfg)
    return make_dataset(data.paths, data.labels, len(data.classes), cfg, training=True, seed=seed)


def _val_ds(src: _Source, data: Any, size: tuple[int, int], channels: int) -> Any:
    """The run's validation split (for choosing the best QAT epoch), or None without a run."""
    if src.run is None or data is not None:
        return None
    from kdefect.data.pipeline import make_dataset
    from kdefect.data.split import label_indices, load_split

    classes, _ = src.run.classes()
    paths, names = load_split(src.run.path).get("val", ([], []))
    if not paths:
        return None
    cfg = src.run.config().data
    cfg.image_size, cfg.channels, cfg.resize = list(size), channels, resize_mode(cfg)
    return make_dataset(list(paths), label_indices(classes, names), len(classes), cfg,
                        training=False)


def _default_out(src: _Source, tag: str) -> Path:
    if src.run is not None and Path(src.origin) == src.run.path:
        return src.run.path / "export" / f"model_{tag}.tflite"
    p = Path(src.origin)
    base = p.parent if p.suffix else p
    return base / f"{p.stem or 'model'}_{tag}.tflite"


def _own_export(source: Any) -> Task | None:
    """The run's task when it exports itself (detection: the raw head), else None (the classifier path)."""
    if not isinstance(source, (str, Path)) or not (Path(source) / "config.yaml").is_file():
        return None
    task = get_task(RunDir.open(source).config().task)
    return task if task.export is not None else None


def _export_task_run(task: Task, run: Path, out: str | Path | None, mode: str, qat: bool, prune: float | None,
                     distill_from: Any, edgetpu: bool, allow_unready: bool = False) -> dict[str, Any]:
    """Detectors export their raw head (PTQ); numpy decoding + NMS run after the interpreter.

    A NOT READY (or never calibrated) run is refused unless ``allow_unready``, as for classifiers.
    """
    if prune or distill_from:
        raise ExportError("--prune and --distill-from are for classifiers; export a detector with --int8 (PTQ).")
    rd = verified_run(run)
    readiness = check_readiness(_Source(None, rd, str(run)), load_calibration(rd), allow_unready)
    path = Path(out) if out else run / "export" / f"model_{mode}{'_ptq' if mode == 'int8' else ''}.tflite"
    path = task.export(run, path, mode="qat" if qat else mode, readiness=readiness)
    res: dict[str, Any] = {"model": str(path), "task": task.name, "mode": mode, "steps": [f"{mode} (raw head)"],
                           "readiness": readiness}
    if edgetpu:
        from kdefect.export.edgetpu import write_report

        res["edgetpu_report"] = str(write_report(path))
    return res


def check_readiness(src: _Source, cal: dict[str, Any] | None, allow_unready: bool = False) -> dict[str, Any]:
    """The run's verdict for the sidecar; raise ``ExportError`` for a NOT READY run unless ``allow_unready``.

    ``cal``: the run's current calibration (``load_calibration``), read once by the caller.
    """
    own_run = src.run is not None and Path(src.origin).resolve() == src.run.path.resolve()
    if not own_run:
        log.warning("%s is not a kdefect run: it has no validated READY verdict. Its sidecar records that.",
                    src.origin)
        return {"verdict": "UNKNOWN", "calibrated": False, "exported_unready": True,
                "reasons": ["model from outside a kdefect run: never judged against trust.targets"]}
    verdict = (cal or {}).get("verdict")
    if cal is None:
        reasons = [f"not calibrated (run `kdefect calibrate {src.run.path}`)"]
    elif verdict is None:
        reasons = [f"calibrated before verdicts existed (run `kdefect calibrate {src.run.path}` again)"]
    else:
        reasons = list(verdict["reasons"])
    ready = not reasons
    if not ready and not allow_unready:
        raise ExportError(f"{src.run.path} is NOT READY: {'; '.join(reasons)}. Improve the model, or pass "
                          "--allow-unready to export it anyway (the sidecar and model card then say so).")
    if not ready:
        log.warning("exporting a NOT READY model (--allow-unready): %s", "; ".join(reasons))
    return {"verdict": "READY" if ready else "NOT READY", "calibrated": cal is not None,
            "exported_unready": not ready, "reasons": reasons}


def export_run(source: Any, spec: ExportSpec | None = None, **options: Any) -> dict[str, Any]:
    """Export a run folder (or a model) to TFLite with its sidecar, as ``spec`` says; returns a summary dict.

    ``options``: ``ExportSpec`` fields as keywords (they replace those of ``spec``), the call before ExportSpec.
    ``spec.ood_gate``: the device's unknown-defect gate. ``msp`` (1 - max calibrated probability, from
    ``kdefect calibrate``), ``knn`` (a second, feature output and a bank of the training split's device features
    beside the model; needs a run's splits) or ``none``.
    """
    return _export(source, **ExportSpec.of(spec, **options).options())


def _export(
    source: Any,
    out: str | Path | None = None,
    mode: str = "int8",
    qat: bool = False,
    prune: float | None = None,
    distill_from: str | Path | None = None,
    student: str | None = None,
    edgetpu: bool = False,
    input_type: str = "uint8",
    output_type: str = "uint8",
    epochs: int = 2,
    steps_per_epoch: int | None = None,
    learning_rate: float = 1e-4,
    distill_epochs: int = 5,
    temperature: float = 4.0,
    alpha: float = 0.5,
    calib_size: int = 200,
    run: str | Path | None = None,
    data: str | Path | None = None,
    seed: int = 0,
    ood_gate: str = "msp",
    allow_unready: bool = False,
    sign_key: str | Path | None = None,
    trust_model: bool = False,
) -> dict[str, Any]:
    """``export_run`` with the spec's fields as arguments."""
    from kdefect.export.feature_gate import GATES

    if ood_gate not in GATES:
        raise ExportError(f"unknown --ood-gate '{ood_gate}'; choose one of {', '.join(GATES)}.")
    key = None
    if sign_key is not None:
        from kdefect.edge.signing import load_private_key

        key = load_private_key(sign_key)  # a wrong key fails before a long export, not after
    own = _own_export(source)
    if own is not None:
        if sign_key is not None:
            raise ExportError("--sign is for classifiers; detector exports are not signed yet (kdefect-edge checks "
                              "their sha256 only): drop it for detectors.")
        if ood_gate == "knn":
            raise ExportError("--ood-gate knn is for classifiers; detectors have no OOD gate yet.")
        return _export_task_run(own, Path(source), out, mode, qat, prune, distill_from, edgetpu, allow_unready)
    from kdefect.optimize import distill as distill_fn
    from kdefect.optimize import prune as prune_fn
    from kdefect.optimize import quantize_aware

    if edgetpu and mode != "int8":
        raise ExportError(f"--edgetpu needs a full-integer model: use --int8 (not --{mode}).")
    if qat and mode != "int8":
        raise ExportError(f"--qat trains for INT8: use it with --int8, not --{mode}.")
    if mode != "int8":
        input_type = output_type = "float32"
    if edgetpu and "float32" in (input_type, output_type):
        log.warning("Edge TPU: float %s I/O adds CPU quantize ops; uint8 is the native type.",
                    "input" if input_type == "float32" else "output")
    src = _open_source(source, run, trust_model)
    cal = load_calibration(src.run) if src.run is not None else None  # hashes model.keras: once per export
    readiness = check_readiness(src, cal, allow_unready)
    model = src.model
    h, w, c = input_shape_of(model)
    # the run's resize mode (an old run's config without one: squash); a user's own model without a run: squash
    resize = resize_mode(src.run.config().data) if src.run is not None else "squash"
    dataset = _load_data(src, data, (h, w), c, resize)
    steps: list[str] = []
    if distill_from is not None:
        from kdefect.tasks.classify import build_classifier

        teacher = _open_source(distill_from).model
        d = _need(dataset, "--distill-from")
        stud = build_classifier(len(d.classes), backbone=student or "mobilenet_v3_small", input_size=(h, w),
                                channels=c)
        model = distill_fn(teacher, stud, _train_ds(d, (h, w), c, seed), temperature, alpha, distill_epochs,
                           learning_rate=1e-3, steps_per_epoch=steps_per_epoch)
        steps.append(f"distill_{student or 'mobilenet_v3_small'}")
        qat = mode == "int8"
    scheme = None
    if prune:
        d = _need(dataset, "--prune")
        model = prune_fn(model, _train_ds(d, (h, w), c, seed), prune, epochs, learning_rate, steps_per_epoch)
        steps.append(f"prune{round(100 * prune)}")
        if mode == "int8":
            qat = True
            scheme = tfmot().experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    if qat:
        d = _need(dataset, "--qat")
        model = quantize_aware(model, _train_ds(d, (h, w), c, seed), epochs, learning_rate, steps_per_epoch,
                               val_ds=_val_ds(src, data, (h, w), c),
                               scheme=scheme)
        steps.append("pqat" if scheme is not None else "qat")
    rep = None
    if mode == "int8":
        rep = representative_images(_need(dataset, "INT8 calibration"), (h, w), c, calib_size, seed, resize)
    quant = "-".join([mode, *(steps or (["ptq"] if mode == "int8" else []))])
    out_path = Path(out) if out else _default_out(src, quant.replace("-", "_"))
    thresholds = thresholds_from(cal if distill_from is None else None)  # a distilled student is another model
    main, feat = 0, None
    if ood_gate == "knn":
        if src.run is None:
            raise ExportError("--ood-gate knn fits its bank on the run's training split: export a run folder "
                              "(or pass --run RUN with --model).")
        from kdefect.export.feature_gate import with_features

        model = with_features(model)
    to_tflite(model, out_path, mode, rep, input_type, output_type)
    if ood_gate == "knn":
        from kdefect.data.split import load_split
        from kdefect.export.feature_gate import fit_gate, locate_outputs

        probe = rep[0] if rep is not None else representative_images(_need(dataset, "the kNN gate"), (h, w), c, 1,
                                                                     resize=resize)[0]
        main, feat = locate_outputs(out_path, model, probe)
        thresholds["ood"] = fit_gate(out_path, feat, load_split(src.run.path), (h, w), c, seed=seed, resize=resize)
    elif ood_gate == "none":
        thresholds.pop("ood", None)
    (inp, *_), outs = model_io(out_path)
    classes = dataset.classes if dataset else [str(i) for i in range(int(outs[main]["shape"][-1]))]
    good = dataset.good_label if dataset else None
    sc = Sidecar(
        sha256="", task="classify", labels=classes, good_label=good,
        input=InputSpec(size=[h, w], channels=c, dtype=inp["dtype"], scale=inp["scale"], zero_point=inp["zero_point"],
                        resize=resize, modes=_train_modes(src.run)),
        output={"dtype": outs[main]["dtype"], "scale": outs[main]["scale"], "zero_point": outs[main]["zero_point"],
                "kind": "probabilities", "index": main,
                **({"features_index": feat, "features_dim": int(outs[feat]["shape"][-1])} if feat is not None else {})},
        thresholds=thresholds, quantization=quant,
        source_run=str(src.run.path.resolve()) if src.run is not None else None, readiness=readiness,
    )
    side = write_sidecar(out_path, sc)
    result: dict[str, Any] = {"model": str(out_path), "sidecar": str(side), "quantization": quant,
                              "size_bytes": out_path.stat().st_size, "input": inp, "output": outs[main],
                              "ood_gate": thresholds.get("ood"), "readiness": readiness}
    if prune:
        result["sparsity"] = weight_sparsity(out_path)["overall"]
    if edgetpu:
        from kdefect.export.edgetpu import compatibility_report, compile_edgetpu, write_report

        rep_ = compatibility_report(out_path)
        result["edgetpu_report"] = str(write_report(out_path, rep_))
        result["edgetpu_fully_mappable"] = rep_["fully_mappable"]
        result["edgetpu_compiler"] = compile_edgetpu(out_path)
    if key is not None:
        from kdefect.edge.signing import sign_artefacts

        result["signature"] = str(sign_artefacts(out_path, key))
        compiled = (result.get("edgetpu_compiler") or {}).get("model")
        if compiled:
            result["edgetpu_signature"] = str(sign_artefacts(compiled, key))
    log.info("exported %s (%s, %.1f KiB)", out_path, quant, result["size_bytes"] / 1024)
    return result
