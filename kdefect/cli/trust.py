"""``kdefect cv / calibrate / explain / report / monitor``: thin wrappers over ``kdefect.trust``."""

from __future__ import annotations

import json
import sys

import click

from kdefect.cli import main


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (see configs/).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@click.option("--folds", type=int, default=5, show_default=True, help="Number of stratified folds.")
@click.option("--calibrate/--no-calibrate", default=False, help="Also fit temperature scaling per fold (ECE mean/std).")
@click.pass_context
def cv(ctx: click.Context, config_path: str | None, sets: tuple[str, ...], folds: int, calibrate: bool) -> None:
    """Stratified K-fold cross-validation; each fold a run folder, plus cv_summary.json."""
    from kdefect.cli.app import load_checked_config

    cfg = load_checked_config(config_path, list(sets))
    from kdefect.trust.cv import cross_validate  # lazy, after the config: a typo is reported before TF loads

    summary = cross_validate(cfg, folds, calibrate=calibrate, quiet=ctx.obj["quiet"])
    keys = ("accuracy", "macro_recall", "escape_rate", "calibration.test_ece_after")
    click.echo(json.dumps({"path": summary["path"], **{k: {s: summary["metrics"][k][s] for s in ("mean", "std")}
                                                       for k in keys if k in summary["metrics"]}}, indent=2))


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--target-risk", type=float, help="Residual error allowed on parts not sent to review (sets "
              "review_below). Default: the run's trust.target_risk (0.005).")
@click.option("--target-escape", type=float, help="Escape rate allowed on validation when choosing the P(good) "
              "threshold. Default: the run's trust.target_escape (0.01).")
def calibrate(run: str, target_risk: float | None, target_escape: float | None) -> None:
    """Fit temperature, review threshold, OOD threshold and operating point; writes calibration.json.

    Prints the fit-for-use table and the READY / NOT READY verdict on the test split.
    """
    from kdefect.trust.calibrate import calibrate_run
    from kdefect.trust.verdict import format_verdict

    out = calibrate_run(run, target_risk=target_risk, target_escape=target_escape)
    keys = ("temperature", "review_below", "ece_before", "ece_after", "test_ece_before", "test_ece_after",
            "decision")  # a detector's calibration is its reject threshold (``decision``)
    click.echo(json.dumps({**{k: out[k] for k in keys if k in out}, "verdict": out["verdict"]["verdict"]}, indent=2))
    click.echo(format_verdict(out["verdict"]), err=True)


@main.command()
@click.argument("model", required=False, type=click.Path(exists=True))
@click.argument("images", nargs=-1, type=click.Path(exists=True))
@click.option("--method", "methods", multiple=True,
              type=click.Choice(["gradcam", "lime", "shap", "occlusion", "drise"]),
              help="Repeatable. Default: gradcam for a run / .keras, lime for a .tflite (and lime, shap, occlusion "
              "for --decision); drise, the only one for a detector, explains one of its boxes.")
@click.option("--out", type=click.Path(file_okay=False), default="explanations", show_default=True)
@click.option("--class", "class_name", help="Explain this class instead of the predicted one.")
@click.option("--layer", help="Feature-map layer for Grad-CAM (default: the layer feeding the head).")
@click.option("--decision", "decision_log", type=click.Path(exists=True, dir_okay=False),
              help="A decisions.jsonl from kdefect-edge: explain its line --index (MODEL = the .tflite that ran).")
@click.option("--index", type=int, default=-1, show_default=True, help="Line of --decision (negative: from the end).")
@click.option("--samples", type=int, default=300, show_default=True, help="LIME: perturbed images per explanation.")
@click.option("--segments", type=int, default=50, show_default=True, help="LIME: SLIC superpixels.")
@click.option("--evals", type=int, default=500, show_default=True, help="SHAP: model evaluations per explanation.")
@click.option("--masker", type=click.Choice(["blur", "mean", "zero"]), default="blur", show_default=True,
              help="What hides a region (SHAP, occlusion).")
@click.option("--box", type=int, default=0, show_default=True,
              help="D-RISE: the detected box to explain (0 = the highest score on the unmasked image).")
@click.option("--masks", type=int, default=1000, show_default=True, help="D-RISE: random masks per explanation.")
@click.option("--cells", type=int, default=16, show_default=True, help="D-RISE: mask grid cells per side.")
@click.option("--keep", type=float, default=0.5, show_default=True, help="D-RISE: probability a grid cell is kept.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Perturbed images per interpreter invoke "
              "(1 = the device's loop; a resized batch input may help larger models).")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")
@click.pass_context
def explain(ctx: click.Context, model: str | None, images: tuple[str, ...], methods: tuple[str, ...], out: str,
            class_name: str | None, layer: str | None, decision_log: str | None, index: int, samples: int,
            segments: int, evals: int, masker: str, box: int, masks: int, cells: int, keep: float, seed: int,
            batch: int, threads: int) -> None:
    """Saliency overlays for images, or a one-page explanation of one logged edge decision.

    MODEL is a run folder, a .keras file or an exported .tflite. LIME, SHAP and occlusion run on the .tflite
    through the device's preprocessing and decision rule; Grad-CAM needs the Keras model. A detector is explained
    with D-RISE, one box at a time, on its .tflite through the device's runner and decoder.
    """
    from kdefect.errors import ConfigError
    from kdefect.trust.saliency import ExplainSettings

    settings = ExplainSettings(seed=seed, segments=segments, lime_samples=samples, shap_evals=evals, masker=masker,
                               batch=batch, drise_masks=masks, drise_cells=cells, drise_keep=keep)
    if decision_log is not None:
        from kdefect.trust.explain_decision import explain_decision

        paths = explain_decision(decision_log, index, out, model, list(methods) or None, settings, threads)
        click.echo(str(paths["html"]))
        return
    if model is None or not images:
        raise ConfigError("give MODEL and IMAGES (kdefect explain MODEL IMAGES...), or --decision LOG --index N.")
    from kdefect.trust.explain_detect import check_methods, default_methods, is_detector

    detector = is_detector(model)
    chosen = list(methods) or default_methods(model, detector)
    check_methods(model, chosen, class_name, detector)  # before the Grad-CAM branch below, which skips explain_files
    if chosen == ["gradcam"] and not model.endswith(".tflite"):
        from kdefect.trust.explain import explain_files as gradcam_files

        paths = gradcam_files(model, list(images), out, class_name, layer)
        click.echo(f"{len(paths)} images written to {out}")
        return
    from kdefect.engine.predictor import collect_images
    from kdefect.trust.explain_run import explain_files

    n = len(collect_images(list(images)))
    if ctx.obj["quiet"]:
        summary = explain_files(model, list(images), out, chosen, settings, class_name, threads, box=box)
    else:
        with click.progressbar(length=n, label="explaining", file=sys.stderr) as bar:
            summary = explain_files(model, list(images), out, chosen, settings, class_name, threads, bar.update,
                                    box)
    for m, c in summary["cost"].items():
        click.echo(f"{m}: {c['s_per_image']} s/image, {c['model_images_per_image']:.0f} model calls/image "
                   f"({summary['model_kind']}, batch {summary['batch']})", err=True)
    click.echo(f"{n} image(s) explained -> {out}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="HTML path (default RUN/report.html).")
@click.option("--gallery", type=int, default=24, show_default=True, help="Most images in the error/review gallery.")
def report(run: str, out: str | None, gallery: int) -> None:
    """One self-contained offline HTML report plus model_card.md for a run."""
    from kdefect.trust.report import build_report

    click.echo(str(build_report(run, out, gallery)))


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("decisions", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Folder for monitor.json/.png/.html.")
@click.option("--last", type=int, help="Only the last N decisions.")
def monitor(run: str, decisions: str, out: str | None, last: int | None) -> None:
    """Compare edge decisions (JSONL) with the validation baseline; recommend retraining on drift."""
    from kdefect.trust.monitor import monitor as monitor_

    result = monitor_(run, decisions, out, last)
    click.echo(result["message"])
    if result["recommendation"] == "retrain":
        raise SystemExit(3)
