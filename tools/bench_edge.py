"""Benchmark the edge runtime against a bare interpreter loop (committed results: tools/results/edge*.{json,md}).

  python tools/bench_edge.py --model model.tflite --images DIR [--n 200] [--threads 1] [--rounds 3] [--out NAME]

Measures, on this CPU:
- bare: ``set_tensor / invoke / get_tensor`` on inputs already decoded and resized (the same inputs the runtime
  computes), images/s and p50 / p95 per invoke;
- runtime: ``kdefect-edge MODEL FOLDER`` as its own process (decode, resize, invoke, decide, fsync-ed JSONL per
  record): images/s of its loop (from its summary), p50 / p95 per decision, cold start (process spawn to the first
  record on disk) and peak RSS of that process (``wait4`` rusage);
- overhead = 1 - runtime images/s / bare images/s (target <= 5%); peak RSS target < 150 MB.
Each of ``--rounds`` rounds runs both, alternating; the median round is reported (the CPUs may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kdefect.edge.classifier import EdgeClassifier  # noqa: E402
from kdefect.edge.interpreter import quantize_input  # noqa: E402
from kdefect.utils.io import write_json, write_text  # noqa: E402

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


def _folder(images: Path, n: int, dest: Path) -> list[Path]:
    """``n`` files (hard links, cycling through ``images``) in ``dest``."""
    src = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    if not src:
        raise SystemExit(f"no images in {images}")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = src[i % len(src)]
        d = dest / f"{i:05d}_{p.name}"
        try:
            os.link(p, d)
        except OSError:
            d.write_bytes(p.read_bytes())
        out.append(d)
    return out


def bare(model: Path, files: list[Path], threads: int) -> dict:
    clf = EdgeClassifier(model, threads=threads)
    interp, din = clf.runner.interpreter, clf.runner.input_detail
    dout = clf.runner.output_details[clf.runner.roles["main"]]["index"]
    xs = [quantize_input(clf.load(f)[None], din) for f in files]
    for x in xs[:3]:  # warm-up, as the runtime does
        interp.set_tensor(din["index"], x)
        interp.invoke()
    lat = []
    t0 = time.perf_counter()
    for x in xs:
        t = time.perf_counter()
        interp.set_tensor(din["index"], x)
        interp.invoke()
        interp.get_tensor(dout)
        lat.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t0
    return {"images_per_s": len(xs) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "backend": clf.backend}


def runtime(model: Path, folder: Path, threads: int, work: Path) -> dict:
    log, summary = work / "d.jsonl", work / "summary.json"
    for p in (log, summary):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "kdefect.edge.cli", str(model), str(folder), "--log", str(log),
           "--summary", str(summary), "--threads", str(threads), "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while first is None and proc.poll() is None:
        if log.exists() and log.stat().st_size > 0:
            first = time.perf_counter() - t0
            break
        time.sleep(0.002)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"kdefect-edge failed ({proc.returncode}): {err}")
    s = json.loads(summary.read_text())
    return {"images_per_s": s["images_per_s"], "p50_ms": s["latency_ms"]["p50"], "p95_ms": s["latency_ms"]["p95"],
            "cold_start_to_first_decision_s": first if first is not None else s["first_decision_s"],
            "peak_rss_mb": rusage.ru_maxrss / 1024, "decisions": s["decisions"], "errors": s["errors"],
            "backend": s["backend"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a kdefect INT8 .tflite with its sidecar")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--n", type=int, default=200, help="images per run (the folder is cycled)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="edge_bench", help="tools/results/<out>.{json,md}")
    p.add_argument("--note", default="", help="free text for the results (e.g. which model)")
    p.add_argument("--compare", type=Path, metavar="MODEL2",
                   help="a second model run by kdefect-edge in the same rounds (alternating): per-round throughput "
                        "ratio MODEL2 / MODEL, e.g. the same network exported with --ood-gate knn")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdefect-bench-") as tmp:
        work = Path(tmp)
        files = _folder(args.images, args.n, work / "images")
        rounds = []
        for _ in range(args.rounds):
            b = bare(args.model, files, args.threads)
            r = runtime(args.model, work / "images", args.threads, work)
            rounds.append({"bare": b, "runtime": r, "overhead": 1 - r["images_per_s"] / b["images_per_s"]})
            if args.compare:
                c = runtime(args.compare, work / "images", args.threads, work)
                rounds[-1].update(compare=c, compare_ratio=c["images_per_s"] / r["images_per_s"])
    med = sorted(rounds, key=lambda x: x["overhead"])[len(rounds) // 2]
    clf = EdgeClassifier(args.model)
    result = {
        "model": str(args.model), "model_sha256": clf.sha256, "input": [*clf.size, clf.channels],
        "images": str(args.images), "n": args.n, "threads": args.threads, "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "bare": med["bare"], "runtime": med["runtime"], "overhead": med["overhead"],
        "overhead_all_rounds": [r["overhead"] for r in rounds],
        "overhead_median_of_rounds": statistics.median(r["overhead"] for r in rounds),
        "targets": {"overhead_max": 0.05, "peak_rss_mb_max": 150},
        "meets_overhead": med["overhead"] <= 0.05, "meets_rss": med["runtime"]["peak_rss_mb"] < 150,
        "command": "python tools/bench_edge.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "note": args.note,
    }
    if args.compare:
        ratios = [x["compare_ratio"] for x in rounds]
        result["compare"] = {"model": str(args.compare), "runtime": med["compare"],
                             "throughput_ratio_rounds": ratios, "throughput_ratio_median": statistics.median(ratios)}
    out = REPO / "tools" / "results" / args.out
    write_json(out.with_suffix(".json"), result)
    b, r = result["bare"], result["runtime"]
    md = f"""# Edge runtime benchmark: {args.out}

`{result['command']}`

Model `{Path(args.model).name}` ({result['input'][0]}x{result['input'][1]}x{result['input'][2]}, sha256
{result['model_sha256'][:12]}), {args.n} images, {args.threads} interpreter thread(s), {result['cpus']} CPUs
(shared with other jobs), backend {r['backend']}; median of {args.rounds} alternating rounds. {args.note}

| | images/s | p50 ms | p95 ms |
|---|---:|---:|---:|
| bare `invoke()` loop (preprocessed inputs) | {b['images_per_s']:.1f} | {b['p50_ms']:.2f} | {b['p95_ms']:.2f} |
| `kdefect-edge` (decode + resize + invoke + fsync-ed log) | {r['images_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |

- Runtime overhead: **{100 * result['overhead']:.1f}%** (target <= 5%; rounds:
  {', '.join(f'{100 * o:.1f}%' for o in result['overhead_all_rounds'])}).
- Cold start, process spawn to first decision on disk: **{r['cold_start_to_first_decision_s']:.2f} s**.
- Peak RSS of the `kdefect-edge` process: **{r['peak_rss_mb']:.0f} MB** (target < 150 MB).
"""
    if args.compare:
        c = result["compare"]
        md += (f"\nSide by side in the same rounds: `{Path(c['model']).name}` through `kdefect-edge`: "
               f"{c['runtime']['images_per_s']:.1f} images/s, p50 {c['runtime']['p50_ms']:.2f} ms, "
               f"p95 {c['runtime']['p95_ms']:.2f} ms; throughput ratio to `{Path(args.model).name}` "
               f"**{c['throughput_ratio_median']:.3f}** (median; rounds "
               f"{', '.join(f'{v:.3f}' for v in c['throughput_ratio_rounds'])}).\n")
    write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
