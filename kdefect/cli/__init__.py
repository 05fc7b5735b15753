"""The ``kdefect`` command: thin click commands over the Python API.

Each command family lives in its own module (train, export, trust, ...) and
registers itself on ``main`` here; no logic lives in the CLI.
"""

from __future__ import annotations

import logging
import sys

import click

from kdefect import __version__
from kdefect.errors import KDefectError


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
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def _register() -> None:
    """Attach every command module; each adds its commands to ``main``."""
    from kdefect.cli import train  # noqa: F401

    for optional in ("export", "detect", "trust", "data"):
        try:
            __import__(f"kdefect.cli.{optional}")
        except ModuleNotFoundError as exc:  # a family not installed/built yet
            if exc.name != f"kdefect.cli.{optional}":
                raise


_register()
