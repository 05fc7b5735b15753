"""The ``kdefect`` command (the workstation CLI; needs the ``train`` extra).

An edge-only install (``pip install 'kdefect[edge]'``) has no click: there
``kdefect`` says in one line what to install and points to ``kdefect-edge``
instead of crashing with ``ModuleNotFoundError``.
"""

from __future__ import annotations

import sys

NO_CLICK = ("kdefect: the training CLI needs the workstation extras: pip install 'kdefect[train]'. "
            "On the device use kdefect-edge (kdefect-edge --help).")


def _without_click(*_args: object, **_kwargs: object) -> None:
    """The ``kdefect`` entry point of an edge-only install: one line on stderr, exit 2."""
    print(NO_CLICK, file=sys.stderr)
    raise SystemExit(2)


def _register() -> None:
    """Attach every command module (each adds its commands to ``main``), then -q / -v to every command."""
    from kdefect.cli import train  # noqa: F401
    from kdefect.cli.app import add_verbosity_options

    for optional in ("export", "detect", "trust", "keys", "data"):
        try:
            __import__(f"kdefect.cli.{optional}")
        except ModuleNotFoundError as exc:  # a family not installed/built yet
            if exc.name != f"kdefect.cli.{optional}":
                raise
    for cmd in main.commands.values():
        add_verbosity_options(cmd)


try:
    from kdefect.cli.app import main
except ModuleNotFoundError as _exc:
    if _exc.name != "click":
        raise
    main = _without_click  # type: ignore[assignment]
else:
    _register()
