"""The README's benchmark section is generated from tools/results: a rerun benchmark must reach the README too."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"kdefect_tools_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_benchmarks_match_the_results_files():
    block = re.search(r"<!-- BENCHMARKS:BEGIN -->\n(.*)\n<!-- BENCHMARKS:END -->",
                      (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert block, "README.md lost its BENCHMARKS markers"
    assert block.group(1) == _tool("update_readme").section(), (
        "README.md's benchmark section differs from tools/results: run `python tools/update_readme.py`")


def test_the_glance_table_reads_every_row_from_a_results_file():
    rows = _tool("glance").rows()
    assert len(rows) >= 10
    for r in rows:
        assert r["status"] in ("met", "**missed**") and r["result"] and r["source"], r
        first = r["source"].split(",")[0].strip()
        assert (ROOT / "tools" / "results" / first).is_file(), first
