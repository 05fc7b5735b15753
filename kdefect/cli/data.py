"""``kdefect data pack``: write a checked, split data set once as TFRecord shards (see docs/scale.md)."""

from __future__ import annotations

import click

from kdefect.cli import main


@main.group()
def data() -> None:
    """Prepare data sets for training at scale."""


@data.command()
@click.argument("source")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config whose data.* (split, duplicates, on_bad_image, good_label) and seed apply.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. data.split=[0.8,0.1,0.1].")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), help="Stop on unreadable images, or skip and record them.")
@click.option("--shard-mb", type=float, default=100.0, show_default=True, help="Target size of one shard file.")
def pack(source: str, out: str, config_path: str | None, sets: tuple[str, ...], on_bad_image: str | None,
         shard_mb: float) -> None:
    """Pack SOURCE (a folder, voc:PATH, synthetic...) into OUT; then train with data.source=tfrecord:OUT."""
    from kdefect.cli.app import load_checked_config

    named = [f"data.source={source}"] + ([f"data.on_bad_image={on_bad_image}"] if on_bad_image else [])
    cfg = load_checked_config(config_path, [*sets, *named], model=False)
    from kdefect.data.tfrecord import pack_dataset  # lazy, after the config: a typo is reported before TF loads

    man = pack_dataset(cfg.data, out, seed=cfg.seed, shard_mb=shard_mb)
    for split, counts in man["counts"].items():
        click.echo(f"{split}: {sum(counts.values())} images " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    click.echo(f"{len(man['shards'])} shards -> {out}  (train with --data tfrecord:{out})")


@data.command()
@click.argument("source")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config whose task, data.* and seed apply (as kdefect fit would read them).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. task=detect.")
@click.option("--task", type=click.Choice(["classify", "detect"]), help="Read the data for this task.")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), help="Stop on unreadable images, or skip and list them.")
def check(source: str, config_path: str | None, sets: tuple[str, ...], task: str | None,
          on_bad_image: str | None) -> None:
    """Show how kdefect reads SOURCE (format, classes, split, profile, auto settings) without training."""
    from kdefect.cli.app import load_checked_config
    from kdefect.data.profile import format_profile
    from kdefect.data.sources import resolve_source

    named = [f"data.source={source}"] + ([f"task={task}"] if task else []) + (
        [f"data.on_bad_image={on_bad_image}"] if on_bad_image else [])
    cfg = load_checked_config(config_path, [*sets, *named], model=False)
    from kdefect.engine.trainer import plan_run  # lazy, after the config: a typo is reported before TF loads

    kind, _ = resolve_source(cfg.data)
    plan = plan_run(cfg)
    idx = plan.index
    click.echo(f"{source}: {kind} data for task {cfg.task}, {len(idx)} images, {len(idx.classes)} classes"
               + (f", {len(idx.skipped)} bad file(s) skipped" if idx.skipped else ""))
    click.echo(format_profile(plan.profile))
    width = max(len(c) for c in idx.classes)
    click.echo(f"split ({'given by the folders' if cfg.data.split_folders == 'keep' else 'stratified, seeded'}):")
    click.echo(f"  {'':<{width}} " + " ".join(f"{s:>6}" for s in plan.split))
    labels = idx.labels
    for c_idx, c in enumerate(idx.classes):
        click.echo(f"  {c:<{width}} " + " ".join(f"{int((labels[v] == c_idx).sum()):>6}" for v in plan.split.values()))
    if (labels < 0).any():
        click.echo(f"  {'(no objects)':<{width}} " + " ".join(f"{int((labels[v] < 0).sum()):>6}"
                                                            for v in plan.split.values()))
    for c in plan.choices:
        click.echo(f"auto: {c}")
    for w in plan.profile.get("warnings", []):
        click.echo(f"warning: {w}")
