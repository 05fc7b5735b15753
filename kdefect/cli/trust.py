"""``kdefect cv / calibrate / explain / report / monitor``: thin wrappers over ``kdefect.trust``."""

from __future__ import annotations

import json

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
    from kdefect.config import load_config
    from kdefect.trust.cv import cross_validate

    summary = cross_validate(load_config(config_path, list(sets)), folds, calibrate=calibrate,
                             quiet=ctx.obj["quiet"])
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
@click.argument("model", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False), default="explanations", show_default=True)
@click.option("--class", "class_name", help="Explain this class instead of the predicted one.")
@click.option("--layer", help="Feature-map layer for Grad-CAM (default: the layer feeding the head).")
def explain(model: str, images: tuple[str, ...], out: str, class_name: str | None, layer: str | None) -> None:
    """Grad-CAM overlays (and CBAM spatial maps) for images; MODEL is a run folder or .keras file."""
    from kdefect.trust.explain import explain_files

    paths = explain_files(model, list(images), out, class_name, layer)
    click.echo(f"{len(paths)} images written to {out}")


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
