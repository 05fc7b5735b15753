"""``kdefect fit / evaluate / predict``: thin wrappers over ``kdefect.engine``."""

from __future__ import annotations

from pathlib import Path

import click

from kdefect.cli import main


def _overrides(sets: tuple[str, ...], **named: object) -> list[str]:
    out = list(sets)
    out += [f"{k}={v}" for k, v in named.items() if v is not None]
    return out


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (see configs/).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. model.backbone=mobilenet_v2.")
@click.option("--data", help="Data source: a class-per-folder path, voc:PATH, tfds:NAME or 'synthetic'.")
@click.option("--backbone", help="Registered backbone name (model.backbone, or detect.backbone for detectors).")
@click.option("--epochs", type=int, help="Training epochs (shortcut for --set train.epochs=...).")
@click.option("--name", help="Run name; the folder is runs_dir/NAME (suffixed -2, -3... if taken).")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), help="Stop on unreadable images, or skip and record them.")
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False), metavar="RUN",
              help="Continue the killed run RUN in its folder from its last completed epoch (options, if given, "
                   "must match its config).")
@click.pass_context
def fit(ctx: click.Context, config_path: str | None, sets: tuple[str, ...], data: str | None, backbone: str | None,
        epochs: int | None, name: str | None, on_bad_image: str | None, resume: str | None) -> None:
    """Train a model from a config; writes a complete run folder."""
    from kdefect.cli.app import load_checked_config
    from kdefect.config import load_config
    from kdefect.tasks.base import get_task

    named = {"data.source": data, "train.epochs": epochs, "name": name, "data.on_bad_image": on_bad_image}
    cfg, base = None, None
    if resume:  # the run's own config is the base: only what the user names is compared with it
        from kdefect.core.run import RunDir

        base = RunDir.open(resume, allow_failed=True).config().to_dict()
    if not resume or config_path or _overrides(sets, **named) or backbone:
        extra = None if config_path else base
        if backbone:  # detectors keep their backbone under detect.*: the task says which key --backbone sets
            key = get_task(load_config(config_path, _overrides(sets, **named), extra=extra).task).backbone_key
            named[key] = backbone
        cfg = load_checked_config(config_path, _overrides(sets, **named), extra=extra)
    from kdefect.engine import fit as fit_  # lazy, after the config: a typo is reported before TensorFlow loads

    run = fit_(cfg, quiet=ctx.obj["quiet"], resume=resume)
    if run is None:  # a non-chief worker of a multi-worker run
        click.echo("worker done; the chief wrote the run folder")
        return
    _echo_verdict(run.path)
    click.echo(str(run.path))


def _echo_verdict(run_path: object) -> None:
    """The closing block of ``fit`` on stderr (stdout stays the run path; -q keeps it): verdict and next steps."""
    from kdefect.core.calibration import CALIBRATION_FILE
    from kdefect.core.run import RunDir
    from kdefect.tasks.base import get_task
    from kdefect.trust.verdict import format_verdict

    run = RunDir.open(run_path)
    task = get_task(run.config().task)
    cal = run.read_json(CALIBRATION_FILE) if (run.path / CALIBRATION_FILE).is_file() else {}
    verdict = cal.get("verdict")
    metrics = run.read_json("metrics.json") if (run.path / "metrics.json").is_file() else {}
    lines = [f"test split: accuracy {metrics['accuracy']:.4f}, macro recall {metrics['macro_recall']:.4f} "
             f"({metrics['n']} images; each image's top class)"] if "accuracy" in metrics else []
    if lines and verdict and verdict.get("good_min_prob") is not None:  # why the table may disagree with that line
        lines.append(f"the table below applies the calibrated decision rule the device runs: good when "
                     f"P(good) >= {verdict['good_min_prob']:.3f}, else the most likely defect")
    if "map50" in metrics:  # detectors
        lines.append(f"test split: mAP@0.5 {metrics['map50']:.4f}, mAP@0.5:0.95 {metrics['map']:.4f} "
                     f"({metrics['images']} images)")
    profile = run.read_json("data_profile.json") if (run.path / "data_profile.json").is_file() else {}
    lines += [f"data warning: {w}" for w in profile.get("warnings", [])]  # logged at the start, long scrolled away
    lines += [format_verdict(verdict) if verdict else
              "verdict: NOT READY\n  - not calibrated (trust.calibrate is off): run `kdefect calibrate RUN`",
              f"Results saved to {run.path} (data_profile.json, metrics.json, calibration.json)"]
    if verdict and verdict["ready"]:
        flags, name = ("--int8 --qat", "model_int8_qat") if task.qat else ("--int8", "model_int8_ptq")
        lines.append(f"Next: kdefect tflite {run.path} {flags}   then kdefect evaluate "
                     f"{run.path}/export/{name}.tflite --strict")
    else:
        lines.append(f"Next: fix what the verdict names (more data for a rare class, more defective test parts, "
                     f"settings in docs/own-data.md), then fit again; kdefect report {run.path} shows the errors")
    click.echo("\n".join(lines), err=True)


@main.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--data", help="Evaluate on this labelled data instead of the run's saved test split.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for metrics.json and plots.")
@click.option("--strict", is_flag=True, help="Exit with status 3 when the model is NOT READY (for CI gating).")
@click.pass_context
def evaluate(ctx: click.Context, target: str, data: str | None, out: str | None, strict: bool) -> None:
    """Recompute metrics (and the READY / NOT READY verdict) for a run folder, a .keras or a .tflite model."""
    import json

    from kdefect.engine import evaluate as evaluate_
    from kdefect.trust.verdict import format_verdict

    metrics = evaluate_(target, data=data, out=out, quiet=ctx.obj["quiet"])
    keys = [k for k in ("n", "accuracy", "macro_recall", "escape_rate", "agreement", "map50", "map") if k in metrics]
    verdict = metrics.get("verdict")
    click.echo(json.dumps({**{k: metrics[k] for k in keys}, **({"verdict": verdict["verdict"]} if verdict else {})},
                          indent=2))
    if verdict is not None:
        click.echo(format_verdict(verdict), err=True)
    if metrics.get("metrics_file"):
        click.echo(f"Metrics written to {metrics['metrics_file']}", err=True)
    if strict and (verdict is None or not verdict["ready"]):
        raise SystemExit(3)


@main.command()
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False),
              help="CSV with class, score and every class probability per image "
                   "[default: predictions.csv in the run folder, or beside the model file].")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Large jobs: stream in bounded memory and write parts here; a rerun resumes (docs/scale.md).")
@click.option("--part-size", type=int, default=10_000, show_default=True, help="Images per part (with --out-dir).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Part format (with --out-dir); parquet needs pyarrow.")
def predict(model: str, inputs: tuple[str, ...], out: str | None, out_dir: str | None, part_size: int, fmt: str) -> None:
    """Classify images (files or folders) with a run, .keras or .tflite model."""
    if out_dir:
        from kdefect.engine.batch_predict import predict_parts

        s = predict_parts(model, list(inputs), out_dir, part_size=part_size, fmt=fmt)
        click.echo(f"{s['images']} predictions in {s['parts'] - s['skipped_parts']} new part(s) "
                   f"({s['skipped_parts']} already written) -> {out_dir}")
        return
    from kdefect.engine import predict as predict_
    from kdefect.engine.predictor import default_predictions_path

    out_path = Path(out) if out else default_predictions_path(model)
    rows = predict_(model, list(inputs), out=out_path)
    click.echo(f"{len(rows)} predictions -> {out_path.resolve()}")
