"""Issue-10 benchmark: is the quick start fast and READY in every run, not just a lucky one?

Runs the README's second command, ``kdefect fit --config configs/quickstart.yaml``, end to end through
the console entry point (TensorFlow import, data generation from the cache, training, SavedModel,
calibration and the verdict) once per seed, one after the other, and records per run the wall time,
the verdict and the escapes behind it.  Training on a CPU is not bit-reproducible, so a verdict that
holds for one seed says little: the summary counts READY runs out of all.

Results: tools/results/quickstart.{json,md}.
Example: python tools/bench_quickstart.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, arm_env, code_arm, header, md_table, write_md

from kdefect.utils.io import write_json

CONFIG = Path(__file__).parents[1] / "configs" / "quickstart.yaml"


def run_once(seed: int, runs_dir: Path, extra: list[str], src: Path | None = None) -> dict[str, Any]:
    """One quick start in a fresh process (what a newcomer runs), with ``seed`` for split and weights.

    ``src``: run the kdefect package found in that source tree instead (another commit's worktree), so a code
    change is measured against its parent in one interleaved run.
    """
    exe = Path(sys.executable).with_name("kdefect")
    cmd = [str(exe)] if exe.exists() and src is None else [sys.executable, "-m", "kdefect"]
    sets = [f"runs_dir={runs_dir}", f"name=qs-seed{seed}", f"seed={seed}", *extra]
    argv = [*cmd, "fit", "--config", str(CONFIG), *[a for s in sets for a in ("--set", s)]]
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=arm_env(src))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return {"seed": seed, "rc": r.returncode, "wall_seconds": wall, "error": r.stderr[-500:]}
    run = Path(r.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    verdict = json.loads((run / "calibration.json").read_text())["verdict"]
    return {"seed": seed, "rc": 0, "wall_seconds": round(wall, 1), "accuracy": metrics["accuracy"],
            "macro_recall": metrics["macro_recall"], "epochs": metrics["training"].get("epochs_run"), "train_seconds": metrics["training"].get("train_seconds"),
            "escapes": f"{verdict['escapes']}/{verdict['defective']}", "model_escapes": verdict["model_escapes"],
            "escape_upper95": verdict["escape_upper95"], "false_reject_rate": verdict["false_reject_rate"],
            "review_share": verdict["review_share"], "verdict": verdict["verdict"],
            "reasons": "; ".join(verdict["reasons"])}


# side-by-side arms (``--arms``): extra overrides on top of the config as shipped
ARMS: dict[str, list[str]] = {
    "shipped": [],
    # the quick start's backbone before and after: a full-resolution first block, or a stride-2 first convolution
    "tiny_cnn": ["model.backbone=tiny_cnn"],
    "tiny_cnn_s2": ["model.backbone=tiny_cnn_s2"],
    # resume snapshots at every epoch end (before train.snapshot_every_s) or every 30 s (shipped)
    "snapshot_every_epoch": ["train.snapshot_every_s=0"],
    # a shorter cosine schedule (it still decays to its floor by the last epoch): does 40 epochs buy the verdict?
    "epochs30": ["train.epochs=30"],
    "epochs25": ["train.epochs=25"],
}



def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """READY count and wall-time median / max of one arm's runs."""
    ok = [r for r in rows if r["rc"] == 0]
    walls = sorted(r["wall_seconds"] for r in ok)
    return {"runs": len(rows), "ready": sum(r.get("verdict") == "READY" for r in ok),
            "wall_median_s": walls[len(walls) // 2] if walls else None, "wall_max_s": walls[-1] if walls else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=["shipped"], choices=list(ARMS),
                    help="run each seed once per arm, arms interleaved (so machine drift hits them alike)")
    ap.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                    help="one more arm: the shipped config run by the kdefect source in DIR (e.g. a worktree of the "
                         "parent commit), interleaved with --arms")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override")
    ap.add_argument("--out", default="quickstart")
    args = ap.parse_args()
    code = {name: (src, rev) for name, src, rev in map(code_arm, args.code)}
    arms = [*args.arms, *code]
    described = {a: ARMS[a] for a in args.arms} | {n: [f"code at {rev}"] for n, (_, rev) in code.items()}
    root = Path(tempfile.mkdtemp(prefix="kdefect-qs-"))
    try:
        rows = []
        for s in args.seeds:
            for arm in arms:
                extra, src = ([], code[arm][0]) if arm in code else (ARMS[arm], None)
                rows.append({"arm": arm, **run_once(s, root, [*extra, *args.sets], src)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summaries = {arm: summarise([r for r in rows if r["arm"] == arm]) for arm in arms}
    data = {**header(), "config": str(CONFIG.name), "extra": args.sets, "arms": described,
            "summary": summaries, "rows": rows}
    write_json(RESULTS / f"{args.out}.json", data)
    cols = (["arm"] if len(arms) > 1 else []) + [
        "seed", "wall_seconds", "train_seconds", "epochs", "accuracy", "macro_recall", "escapes", "model_escapes",
        "escape_upper95", "false_reject_rate", "review_share", "verdict"]
    m = data["machine"]
    lines = [f"**{arm}** (`{' '.join(described[arm]) or 'as shipped'}`): READY in {sm['ready']} of {sm['runs']} runs; "
             f"wall time median {sm['wall_median_s']} s, max {sm['wall_max_s']} s." for arm, sm in summaries.items()]
    text = (f"# Quick start, repeated\n\nCommand: `{data['command']}`  \nDate: {data['date']}  \n"
            f"Machine: {m['cpu']}, {m['cpu_count']} cores  \nConfig: `configs/{CONFIG.name}` {' '.join(args.sets)}\n\n"
            f"Each row is `kdefect fit --config configs/quickstart.yaml --set seed=N` (plus the arm's overrides) in a "
            f"fresh process (wall time includes the TensorFlow import, training, the SavedModel, calibration and the "
            f"verdict).\n\n" + "\n\n".join(lines) + "\n\n" + md_table(rows, cols))
    reasons = [f"- {r['arm']} seed {r['seed']}: {r['reasons']}" for r in rows if r["rc"] == 0 and r.get("reasons")]
    if reasons:
        text += "\nVerdict reasons:\n\n" + "\n".join(reasons) + "\n"
    write_md(RESULTS / f"{args.out}.md", text)


if __name__ == "__main__":
    main()
