"""The ``kdefect`` click group: thin commands over the Python API.

Each command family lives in its own module (train, export, trust, ...) and
registers itself on ``main`` (imported from ``kdefect.cli``); no logic lives in
the CLI.  ``-q`` / ``-v`` work before the subcommand and after it
(:func:`add_verbosity_options`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from kdefect import __version__
from kdefect.errors import KDefectError

if TYPE_CHECKING:
    from kdefect.config import Config


class _Group(click.Group):
    """Turn kdefect's own errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KDefectError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kdefect")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """kdefect: train, validate, quantize and deploy defect-inspection models."""
    ctx.ensure_object(dict)
    _set_verbosity(ctx, quiet, verbose)


def _set_verbosity(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Logging level for kdefect; ``-v`` also lets TensorFlow's own log lines through (kdefect.keras hides them).

    Called by the group and again by a subcommand's own ``-q`` / ``-v``; the last one given wins.
    """
    root = ctx.find_root()
    root.ensure_object(dict)
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(level)
    if verbose:  # read by kdefect.keras when TensorFlow is first imported (commands import it lazily)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    root.obj["quiet"] = quiet or (root.obj.get("quiet", False) and not verbose)


def add_verbosity_options(cmd: click.Command) -> None:
    """Give ``cmd`` (and every subcommand of a group) its own ``-q`` / ``-v``: ``kdefect evaluate -q RUN`` works."""
    def callback(flag: str) -> Any:
        def cb(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
            if value:
                _set_verbosity(ctx, quiet=flag == "quiet", verbose=flag == "verbose")
        return cb

    names = {n for p in cmd.params for n in p.opts}
    if "-q" not in names:
        cmd.params.append(click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                                       callback=callback("quiet"), help="Only warnings and errors."))
    if "-v" not in names:
        cmd.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                                       callback=callback("verbose"), help="Debug logging, TensorFlow's included."))
    for sub in getattr(cmd, "commands", {}).values():
        add_verbosity_options(sub)


def load_checked_config(config_path: str | None, overrides: list[str], extra: dict[str, Any] | None = None,
                        *, model: bool = True) -> Config:
    """The command's config, with its local data path (and with ``model``, its backbone) checked. Every step is
    TF-free: a command calls this before it imports the engine, so a mistyped key, backbone or path is answered in
    under a second instead of after TensorFlow's start-up (tests/cli/test_cli_ux.py hides TensorFlow to prove it).
    The data commands pass ``model=False``: they never build the model."""
    from kdefect.config import load_config
    from kdefect.core.catalogue import check_model_names
    from kdefect.data.sources import check_location

    cfg = load_config(config_path, overrides, extra=extra)
    if model:
        check_model_names(cfg)
    check_location(cfg.data)
    return cfg

