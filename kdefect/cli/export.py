"""``kdefect tflite``: thin wrapper over ``kdefect.export.export_run``."""

from __future__ import annotations

import json

import click

from kdefect.cli import main


@main.command()
@click.argument("source", required=False, type=click.Path(exists=True))
@click.option("--model", "model_file", type=click.Path(exists=True),
              help="Your own .keras / .h5 / SavedModel instead of a run folder (use --run or --data for images).")
@click.option("--int8", "mode", flag_value="int8", default=True, help="Full-integer INT8 (default).")
@click.option("--float16", "mode", flag_value="float16", help="Float16 weights.")
@click.option("--dynamic", "mode", flag_value="dynamic", help="Dynamic-range (INT8 weights, float activations).")
@click.option("--float32", "mode", flag_value="float32", help="Plain float32.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning on the run's training split first.")
@click.option("--prune", type=float, metavar="SPARSITY", help="Magnitude-prune to this sparsity (e.g. 0.5), then PQAT.")
@click.option("--distill-from", type=click.Path(exists=True), metavar="TEACHER_RUN", help="Distil a student from this run.")
@click.option("--student", default="mobilenet_v3_small", show_default=True, help="Student backbone for --distill-from.")
@click.option("--edgetpu", is_flag=True, help="Edge TPU report (+ edgetpu_compiler when installed).")
@click.option("--out", type=click.Path(dir_okay=False), help="Output .tflite (default: RUN/export/model_<mode>.tflite).")
@click.option("--input-type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True)
@click.option("--output-type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True)
@click.option("--epochs", type=int, default=5, show_default=True,
              help="QAT / pruning fine-tuning epochs (5 kept NEU QAT INT8 within 0.3 point of float; 2 did not).")
@click.option("--distill-epochs", type=int, default=5, show_default=True)
@click.option("--steps-per-epoch", type=int, help="Limit fine-tuning steps per epoch.")
@click.option("--learning-rate", type=float, default=1e-4, show_default=True, help="QAT / pruning learning rate.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature.")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Distillation weight of the label loss.")
@click.option("--calib-size", type=int, default=200, show_default=True, help="Representative images (stratified).")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), help="Run whose data to use with --model.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="Class-per-folder images for --model.")
@click.option("--ood-gate", type=click.Choice(["msp", "knn", "none"]), default="msp", show_default=True,
              help="Unknown-defect gate on the device: msp = 1 - max calibrated probability; knn = distance to the "
                   "training split in the model's features (adds a feature output and a bank file; best in the NEU "
                   "benchmark); none.")
@click.option("--allow-unready", is_flag=True,
              help="Export a run whose verdict is NOT READY (or that was never calibrated); the sidecar records it.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False), metavar="KEY",
              help="Sign model, sidecar and kNN bank with this private key (kdefect keys new) into model.sig; "
                   "the device checks it with kdefect-edge --trust-key.")
@click.option("--trust-model", is_flag=True,
              help="Load a --model .h5 / SavedModel even if it holds Lambda layers or unknown custom code "
                   "(a model file is a program: only for files you would run as code).")
def tflite(source: str | None, model_file: str | None, mode: str, qat: bool, prune: float | None,
           distill_from: str | None, student: str, edgetpu: bool, out: str | None, input_type: str,
           output_type: str, epochs: int, distill_epochs: int, steps_per_epoch: int | None, learning_rate: float,
           temperature: float, alpha: float, calib_size: int, run_dir: str | None, data: str | None,
           ood_gate: str, allow_unready: bool, sign_key: str | None, trust_model: bool) -> None:
    """Export RUN (or --model FILE) to TFLite with its sidecar model.json."""
    from kdefect.errors import ExportError
    from kdefect.export import ExportSpec, export_run  # lazy: export loads TensorFlow

    target = model_file or source
    if target is None:
        raise ExportError("give a run folder (kdefect tflite RUN) or your model (kdefect tflite --model FILE).")
    spec = ExportSpec(out=out, mode=mode, qat=qat, prune=prune, distill_from=distill_from,
                      student=student if distill_from else None, edgetpu=edgetpu, input_type=input_type,
                      output_type=output_type, epochs=epochs, steps_per_epoch=steps_per_epoch,
                      learning_rate=learning_rate, distill_epochs=distill_epochs, temperature=temperature,
                      alpha=alpha, calib_size=calib_size, run=run_dir, data=data, ood_gate=ood_gate,
                      allow_unready=allow_unready, sign_key=sign_key, trust_model=trust_model)
    res = export_run(target, spec)
    keys = ("model", "sidecar", "signature", "quantization", "size_bytes", "sparsity", "edgetpu_report", "edgetpu_fully_mappable")
    summary = {k: res[k] for k in keys if k in res}
    if "input" in res:  # detectors report their raw-head model without I/O details
        summary["input"] = {k: res["input"][k] for k in ("dtype", "shape", "scale", "zero_point")}
    if res.get("readiness"):
        summary["readiness"] = res["readiness"]["verdict"]
    if res.get("ood_gate"):
        summary["ood_gate"] = {k: v for k, v in res["ood_gate"].items() if k != "bank_sha256"}
    if "edgetpu_compiler" in res:
        summary["edgetpu_compiler"] = res["edgetpu_compiler"].get("model") or res["edgetpu_compiler"].get("message")
    click.echo(json.dumps(summary, indent=2))
