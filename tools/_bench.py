"""Shared helpers for benchmark scripts: machine description and result files.

Every benchmark writes JSON (machine-readable, the source of README figures)
and a Markdown table, each with the exact command, the machine and the date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from kdefect.utils.io import read_json, write_json, write_text

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import tensorflow as tf  # noqa: F401  (already imported by kdefect.keras in benchmarks)

        tfv = sys.modules["tensorflow"].__version__
    except Exception:  # pragma: no cover
        tfv = None
    mem = None
    with contextlib.suppress(ValueError, OSError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(), "tensorflow": tfv}


def code_arm(spec: str) -> tuple[str, Path, str]:
    """``NAME=DIR`` (a benchmark's ``--code`` arm: the kdefect source in DIR, e.g. a worktree of the parent commit,
    run as its own arm so a code change is measured against its parent in one interleaved run) ->
    (name, source tree, its commit)."""
    name, _, folder = spec.partition("=")
    src = Path(folder).resolve()
    if not name or not (src / "kdefect" / "__init__.py").is_file():
        raise SystemExit(f"--code {spec!r}: expected NAME=DIR with DIR a kdefect source tree (a git worktree)")
    check_arm(src)
    return name, src, git_rev(src)


def git_rev(tree: Path) -> str:
    """The short commit of a source tree ("unknown" outside git)."""
    r = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def arm_env(src: Path | None) -> dict[str, str]:
    """The environment of a benchmark's child process: quiet TensorFlow, and a ``--code`` arm's source first.

    ``PYTHONSAFEPATH``: without it ``python -m kdefect`` puts the working directory first on ``sys.path``, and a
    kdefect checkout there (the usual place to run a benchmark from) shadows DIR: the arm silently runs the
    current code. ``check_arm`` proves which source a child imports.
    """
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
            **({"PYTHONPATH": str(src), "PYTHONSAFEPATH": "1"} if src else {})}


def check_arm(src: Path) -> None:
    """SystemExit unless a ``--code`` arm's child imports the ``kdefect`` package in ``src``."""
    r = subprocess.run([sys.executable, "-c", "import kdefect; print(kdefect.__file__)"], capture_output=True,
                       text=True, env=arm_env(src))
    found = Path(r.stdout.strip() or "?").resolve()
    if not found.is_relative_to(Path(src).resolve()):
        raise SystemExit(f"--code arm {src}: its child imports kdefect from {found}, not from {src}")


def header() -> dict[str, Any]:
    return {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine()}


def section_lines(name: str, section: dict[str, Any], *extra: str) -> list[str]:
    """A results page's section heading: its command, date and machine (from ``header()``), then ``extra`` lines."""
    return [f"## {name}", "", f"Command: `{section['command']}`  ", f"Date: {section['date']}  ", *extra]


def merge_results(path: Path, key: str, value: Any) -> dict[str, Any]:
    """Add one section to a results file, keeping the others (benchmarks run in parts)."""
    data = read_json(path) if path.is_file() else {}
    data[key] = {**header(), **value} if isinstance(value, dict) else value
    write_json(path, data)
    return data


def md_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


HAND_NOTES = "<!-- hand notes below: kept when this file is regenerated -->"


def write_md(path: Path, text: str) -> None:
    """Write a results page, keeping the hand-written notes below ``HAND_NOTES`` in the old page.

    Why: a benchmark regenerates its page from the JSON, and notes written after a run (a slower machine, what a
    figure means) were lost on every rerun.
    """
    old = path.read_text() if path.is_file() else ""
    if HAND_NOTES in old and HAND_NOTES not in text:
        text = text.rstrip("\n") + "\n\n" + old[old.index(HAND_NOTES):].rstrip("\n") + "\n"
    write_text(path, text)
