"""``kdefect detect ...``: detection-only commands (``fit / evaluate / predict`` dispatch here by task too)."""

from __future__ import annotations

import json

import click

from kdefect.cli import main


@main.group()
def detect() -> None:
    """Object detectors: export the raw head to TFLite, evaluate and predict with the shared numpy decoder."""


@detect.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--mode", type=click.Choice(["int8", "float16", "dynamic", "float32"]), default="int8",
              show_default=True, help="int8 = full-integer PTQ (uint8 in/out) calibrated on the training split.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output .tflite (default RUN/model_<mode>.tflite).")
@click.option("--allow-unready", is_flag=True,
              help="Export a run whose verdict is NOT READY (or that was never calibrated); the sidecar records it.")
def export_cmd(run: str, mode: str, out: str | None, allow_unready: bool) -> None:
    """Export a detection run (fixed size, batch 1) + its sidecar with the decoding parameters."""
    from pathlib import Path

    from kdefect.export import export_run

    res = export_run(run, out=out or Path(run) / f"model_{mode}.tflite", mode=mode, allow_unready=allow_unready)
    click.echo(res["model"])


@detect.command("evaluate")
@click.argument("target", type=click.Path(exists=True))
@click.option("--data", help="A VOC folder (voc:PATH) instead of the run's saved test split.")
def evaluate_cmd(target: str, data: str | None) -> None:
    """mAP@0.5, mAP@0.5:0.95, per-class AP and recall at the threshold for a run or a .tflite."""
    from kdefect.tasks.detect import evaluate_detector

    m = evaluate_detector(target, data=data)
    click.echo(json.dumps({k: m[k] for k in ("map50", "map", "recall", "missed", "false_positives")
                           if k in m}, indent=2))


@detect.command("predict")
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", default="detections.json", show_default=True, help=".json or .csv; PNGs go to <stem>_annotated/.")
def predict_cmd(model: str, inputs: tuple[str, ...], out: str) -> None:
    """Boxes, classes and scores per image (+ annotated PNGs)."""
    from kdefect.tasks.detect import predict_detector

    res = predict_detector(model, list(inputs), out)
    click.echo(f"{len(res)} image(s), {sum(len(r['detections']) for r in res)} detection(s) -> {out}")
