"""What the training callbacks cost in the quick start, per callback, this code against another commit's.

The quick start's epochs last about a second on a 2-core CPU, so what runs between steps and after each epoch
(resume snapshots, best-checkpoint writes, TensorBoard, history) is a visible share of the run. Wall times of
whole runs on a shared machine vary by more than that share from run to run, so this benchmark times the hooks
themselves: every callback's batch hooks, epoch-end and train-end calls, summed over one ``fit`` of
``configs/quickstart.yaml`` in a fresh process. Arms are interleaved seed by seed; ``--code NAME=DIR`` adds the
kdefect source in DIR (a worktree of another commit) as an arm.

    git worktree add /tmp/before HEAD~1
    python tools/bench_callback_cost.py --seeds 0 1 2 --code before=/tmp/before   -> tools/results/callback_cost.*
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, arm_env, code_arm, git_rev, header, md_table, write_md

from kdefect.utils.io import write_json

CONFIG = Path(__file__).parents[1] / "configs" / "quickstart.yaml"


def child(seed: int, sets: list[str], runs_dir: str) -> dict[str, Any]:
    """One quick-start fit in this process with every callback hook timed (whichever kdefect is importable)."""
    from kdefect.config import load_config
    from kdefect.engine import fit
    from kdefect.keras import keras

    spent: collections.Counter[str] = collections.Counter()
    cls = keras.callbacks.CallbackList

    def timed(cb: Any, hook: str, *args: Any) -> None:
        t0 = time.perf_counter()
        getattr(cb, hook)(*args)
        spent[type(cb).__name__] += time.perf_counter() - t0

    def batch_hook(self: Any, hook: str, batch: int, logs: Any) -> None:
        t0 = time.time()
        logs = self._process_logs(logs, is_batch_hook=True)
        for cb in self.callbacks:
            timed(cb, hook, batch, logs)
        if self._check_timing:  # Keras' own slow-callback warning reads these (as in the method replaced)
            self._hook_times.setdefault(hook, []).append(time.time() - t0)

    def epoch_end(self: Any, epoch: int, logs: Any = None) -> None:
        logs = self._process_logs(logs)
        for cb in self.callbacks:
            timed(cb, "on_epoch_end", epoch, logs)

    def train_end(self: Any, logs: Any = None) -> None:
        logs = self._process_logs(logs)
        for cb in self.callbacks:
            timed(cb, "on_train_end", logs)

    cls._call_batch_hook_helper, cls.on_epoch_end, cls.on_train_end = batch_hook, epoch_end, train_end
    cfg = load_config(CONFIG, [f"runs_dir={runs_dir}", f"name=cb-seed{seed}", f"seed={seed}", *sets])
    t0 = time.perf_counter()
    run = fit(cfg, quiet=True)
    wall = time.perf_counter() - t0
    training = json.loads((run.path / "metrics.json").read_text())["training"]
    skip = {"History", "ProgbarLogger"}  # Keras' own, the same in every arm
    per = {k: round(v, 3) for k, v in sorted(spent.items()) if k not in skip}
    return {"seed": seed, "fit_seconds": round(wall, 1), "train_seconds": training["train_seconds"],
            "epochs": training["epochs_run"], "callbacks_seconds": round(sum(per.values()), 2), "per_callback": per}


def run_arm(seed: int, sets: list[str], runs_dir: Path, src: Path | None) -> dict[str, Any]:
    env = arm_env(src)
    argv = [sys.executable, __file__, "--child", str(seed), "--runs-dir", str(runs_dir),
            *[a for s in sets for a in ("--set", s)]]
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                    help="one more arm: the kdefect source in DIR (e.g. a worktree of the parent commit)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (every arm)")
    ap.add_argument("--runs-dir", default="/tmp/kdefect-callback-cost")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="callback_cost")
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.sets, args.runs_dir)))
        return
    arms: dict[str, tuple[Path | None, str]] = {"now": (None, f"this tree ({git_rev(CONFIG.parents[1])})")}
    arms |= {name: (src, f"code at {rev}") for name, src, rev in map(code_arm, args.code)}
    rows = []
    for seed in args.seeds:
        for arm, (src, _) in arms.items():
            rows.append({"arm": arm, **run_arm(seed, args.sets, Path(args.runs_dir), src)})
            print(json.dumps(rows[-1]), flush=True)
    names = sorted({k for r in rows for k in r["per_callback"]})
    data = {**header(), "config": CONFIG.name, "extra": args.sets, "arms": {a: d for a, (_, d) in arms.items()},
            "rows": rows}
    write_json(RESULTS / f"{args.out}.json", data)
    table = [{"arm": r["arm"], "seed": r["seed"], "fit_seconds": r["fit_seconds"], "train_seconds": r["train_seconds"],
              "epochs": r["epochs"], "callbacks_seconds": r["callbacks_seconds"],
              **{n: r["per_callback"].get(n, "") for n in names}} for r in rows]
    m = data["machine"]
    text = (f"# Callback cost in the quick start\n\nCommand: `{data['command']}`  \nDate: {data['date']}  \n"
            f"Machine: {m['cpu']}, {m['cpu_count']} cores  \nConfig: `configs/{CONFIG.name}` {' '.join(args.sets)}\n\n"
            + "".join(f"- **{a}**: {d}\n" for a, d in data["arms"].items())
            + "\nSeconds spent inside each callback's hooks (batch hooks, epoch end, train end) during one `fit` in a "
              "fresh process; `callbacks_seconds` is their sum. fit / train seconds are wall times (the machine's "
              "speed varies between runs: compare the callback columns).\n\n"
            + md_table(table, ["arm", "seed", "fit_seconds", "train_seconds", "epochs", "callbacks_seconds", *names]))
    write_md(RESULTS / f"{args.out}.md", text)


if __name__ == "__main__":
    main()
