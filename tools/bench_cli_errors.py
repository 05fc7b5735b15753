"""How long a newcomer waits for the commonest first errors, this tree against another commit's.

A mistyped config key or data path should be answered at once, not after TensorFlow's start-up. Each probe runs in a
fresh process from an empty working directory; arms are interleaved, and the median of ``--repeats`` is reported.
The ``trust_imports`` probe times importing the trust modules a fit loads (``scipy.stats`` or not).

    git worktree add /tmp/before <commit>
    python tools/bench_cli_errors.py --code before=/tmp/before   -> tools/results/cli_errors.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, arm_env, code_arm, git_rev, header, md_table, write_md

from kdefect.utils.io import write_json

REPO = Path(__file__).resolve().parents[1]
TRUST = "import kdefect.trust.verdict, kdefect.trust.calibrate, kdefect.trust.ood"
PROBES = {  # name -> (argv after the interpreter, expected exit code)
    "config_typo": (["-m", "kdefect", "fit", "--set", "run_dir=x"], 2),
    "missing_data_path": (["-m", "kdefect", "fit", "--data", "no_such_folder"], 2),
    "backbone_typo": (["-m", "kdefect", "fit", "--set", "model.backbone=mobilenet_v4"], 2),
    "trust_imports": (["-c", TRUST], 0),
}


def probe(argv: list[str], rc: int, src: Path, cwd: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=arm_env(src), cwd=cwd)
    wall = time.perf_counter() - t0
    if r.returncode != rc:
        raise SystemExit(f"{argv} in {src}: exit {r.returncode}, expected {rc}: {r.stderr[-500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--code", action="append", default=[], metavar="NAME=DIR", help="another commit's source tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    ap.add_argument("--out", default="cli_errors", help="results name under tools/results")
    args = ap.parse_args()
    arms = {"now": (REPO, git_rev(REPO))} | {n: (src, rev) for n, src, rev in map(code_arm, args.code)}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(args.repeats):
            for name in args.probes:
                argv, rc = PROBES[name]
                for arm, (src, _) in arms.items():
                    times.setdefault((name, arm), []).append(probe(argv, rc, src, cwd))
    rows = [{"probe": p, "arm": a, "commit": arms[a][1], "median_s": round(statistics.median(t), 2),
             "min_s": round(min(t), 2), "max_s": round(max(t), 2), "runs": len(t)} for (p, a), t in times.items()]
    data = {**header(), "rows": rows}
    write_json(RESULTS / f"{args.out}.json", data)
    write_page(data, args.out)
    for r in rows:
        print(r)


def _typed(argv: list[str]) -> str:
    """What the user types for a probe: ``kdefect ...`` for ``-m kdefect ...``, else ``python -c "..."``."""
    return " ".join(["kdefect", *argv[2:]]) if argv[:2] == ["-m", "kdefect"] else f'python {argv[0]} "{argv[1]}"'


def write_page(data: dict, out: str) -> None:
    """``out``.md from its JSON: each probe that ran, what it types, then the table."""
    m, ran = data["machine"], dict.fromkeys(r["probe"] for r in data["rows"])
    said = "; ".join(f"`{p}`: `{_typed(PROBES[p][0])}`" for p in ran)
    write_md(RESULTS / f"{out}.md", "\n".join([
        "# First errors: how long until the answer", "", f"Command: `{data['command']}`  ", f"Date: {data['date']}  ",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores", "",
        f"{said}. Fresh processes, empty working directory, arms interleaved.", "",
        md_table(data["rows"], ["probe", "arm", "commit", "median_s", "min_s", "max_s", "runs"])]))


if __name__ == "__main__":
    main()
