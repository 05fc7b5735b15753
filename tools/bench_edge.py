"""Benchmark the edge runtime side by side with the loops it replaces (committed results: tools/results/edge*).

  python tools/bench_edge.py --model model.tflite --images DIR [--n 300] [--threads 2] [--rounds 5] [--out NAME]
                             [--parity-split RUN]

Arms, run interleaved in every round (the CPUs may be shared: the median round is reported, with every round):
- ``bare``: ``set_tensor / invoke / get_tensor`` on inputs already decoded, resized and quantised (the ceiling);
- ``naive``: the loop a user would write: PIL open -> convert RGB -> PIL BILINEAR resize -> quantise -> invoke
  (not bit-exact with training: its parity is reported too);
- ``edge``: ``kdefect-edge MODEL FOLDER -q`` as its own process: decode + bit-exact resize in a prefetch thread,
  invoke, decision, one ``write`` per record, group-commit fsync (the default); images/s of its loop, p50 / p95
  per decision, cold start (process spawn to the first record on disk) and peak RSS (``wait4`` rusage);
- ``edge_fsync_record``: the same with ``--fsync record`` (one fsync per part before the next);
- ``edge_no_prefetch``: the same with ``--no-prefetch`` (decode in the invoke thread).
Targets: edge >= 0.95 x bare, edge >= 1.0 x naive, peak RSS <= 100 MB, cold start <= 0.3 s.
A detector (sidecar task ``detect``) runs the same arms through ``EdgeDetector``, plus ``bare_decode``: the bare
loop followed by the shared numpy decoder and the reject rule (what any detector loop must add to ``invoke``);
its naive loop is PIL open -> RGB -> PIL bilinear resize, which is also the detection pipeline's own resize.
``--parity-split RUN``: also check that the device input tensor equals the host pipeline's
(``kdefect.data.pipeline.load_images``, imports TensorFlow, after the timed rounds) on RUN's test split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from _bench import header  # noqa: E402

from kdefect.edge.classifier import EdgeClassifier  # noqa: E402
from kdefect.edge.detector import EdgeDetector  # noqa: E402
from kdefect.edge.interpreter import quantize_input  # noqa: E402
from kdefect.utils.io import write_json, write_text  # noqa: E402

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
EDGE_ARMS = {"edge": [], "edge_fsync_record": ["--fsync", "record"], "edge_no_prefetch": ["--no-prefetch"]}


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


def _stats(lat: list[float], wall: float, cpu: float) -> dict:
    """``cpu_ms_per_image``: process CPU time (all threads) per image, the figure CPU contention does not inflate."""
    return {"images_per_s": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "cpu_ms_per_image": cpu / len(lat) * 1000}


def _open(model: Path, threads: int) -> Any:
    """The runtime's model class for ``model``: ``EdgeDetector`` when its sidecar says ``detect``."""
    from kdefect.core.sidecar import read_sidecar

    if read_sidecar(model).task == "detect":
        return EdgeDetector(model, threads=threads)
    return EdgeClassifier(model, threads=threads)


def _invoke_loop(clf: Any, items: list, make_input: Callable[[Any], np.ndarray],
                 after: Callable[[list[np.ndarray]], Any] | None = None) -> dict:
    """Time ``set_tensor(make_input(item))`` + ``invoke`` + the outputs per item (the plain loops); ``after``
    gets the outputs (a detector's decoding).  A classifier's loop reads its class output only."""
    interp, din = clf.runner.interpreter, clf.runner.input_detail
    roles = clf.runner.roles
    douts = [clf.runner.output_details[roles["main"]]] if "main" in roles and not isinstance(clf, EdgeDetector) \
        else clf.runner.output_details
    lat = []
    c0, t0 = time.process_time(), time.perf_counter()
    for item in items:
        t = time.perf_counter()
        interp.set_tensor(din["index"], make_input(item))
        interp.invoke()
        outs = [interp.get_tensor(d["index"]) for d in douts]
        if after is not None:
            after(outs)
        lat.append((time.perf_counter() - t) * 1000)
    return _stats(lat, time.perf_counter() - t0, time.process_time() - c0)


def bare(clf: Any, xs: list[np.ndarray]) -> dict:
    """Preprocessed input tensors straight into the interpreter: the ceiling."""
    return _invoke_loop(clf, xs, lambda x: x)


def bare_decode(det: EdgeDetector, xs: list[np.ndarray]) -> dict:
    """The bare loop + the shared decoder and the reject rule on the dequantised outputs (detectors)."""
    from kdefect.core import detect_decode as dd
    from kdefect.edge.interpreter import dequantize_output

    details = det.runner.output_details

    def decode(outs: list[np.ndarray]) -> None:
        raw = dd.split_outputs([dequantize_output(o, d) for o, d in zip(outs, details)], det.params)
        dd.decode(raw, det.params)
        dd.rejects(dd.image_score(raw), det.params)

    return _invoke_loop(det, xs, lambda x: x, after=decode)


def naive_input(clf: Any, f: Path) -> np.ndarray:
    """What a hand-written loop feeds the model: Pillow's own bilinear resize (not TF's kernel)."""
    from PIL import Image

    with Image.open(f) as im:
        rgb = im.convert("RGB").resize((clf.size[1], clf.size[0]), Image.BILINEAR)
    return quantize_input(np.asarray(rgb, np.float32)[None], clf.runner.input_detail)


def naive(clf: Any, files: list[Path]) -> dict:
    """The loop a user would write: PIL open -> PIL resize -> invoke."""
    return _invoke_loop(clf, files, lambda f: naive_input(clf, f))


def edge(model: Path, folder: Path, threads: int, work: Path, extra: list[str]) -> dict:
    """One ``kdefect-edge`` run over ``folder``; ``cpu_ms_per_image`` excludes start-up (a 1-image run's CPU)."""
    full = _edge_run(model, folder, threads, work, extra)
    one = _edge_run(model, folder, threads, work, [*extra, "--max-images", "1"])
    full["cpu_ms_per_image"] = (full.pop("cpu_s") - one["cpu_s"]) / max(1, full["decisions"] - 1) * 1000
    full["startup_cpu_s"] = one["cpu_s"]
    return full


def _edge_run(model: Path, folder: Path, threads: int, work: Path, extra: list[str]) -> dict:
    log, summary = work / "d.jsonl", work / "summary.json"
    for p in (log, summary):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "kdefect.edge.cli", str(model), str(folder), "--log", str(log),
           "--summary", str(summary), "--threads", str(threads), "-q", *extra]
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
            "backend": s["backend"], "cpu_s": rusage.ru_utime + rusage.ru_stime}


def parity(model: Path, run: Path) -> dict:
    """Device input tensor vs the host pipeline's, on ``run``'s test split (bit-exact count), and the naive loop's."""
    from kdefect.data.pipeline import load_images
    from kdefect.data.split import load_split

    clf = EdgeClassifier(model)
    paths = [str(p) for p in load_split(run)["test"][0]]
    host = np.concatenate([load_images(paths[i:i + 64], clf.size, clf.channels) for i in range(0, len(paths), 64)])
    dev = np.stack([clf.load(p) for p in paths])
    nv = np.stack([naive_input(clf, Path(p))[0] for p in paths]).astype(np.float32)
    return {"split": f"{run}/split test", "n": len(paths),
            "edge_bit_exact": int(sum(np.array_equal(a, b) for a, b in zip(dev, host))),
            "naive_bit_exact": int(sum(np.array_equal(a, b) for a, b in zip(nv, host))),
            "naive_max_abs_diff": float(np.abs(nv - host).max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a kdefect INT8 .tflite with its sidecar")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--n", type=int, default=300, help="images per arm and round (the folder is cycled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="edge_bench", help="tools/results/<out>.{json,md}")
    p.add_argument("--note", default="", help="free text for the results (e.g. which model)")
    p.add_argument("--parity-split", type=Path, metavar="RUN", help="check bit-exact parity on RUN's test split")
    p.add_argument("--compare", type=Path, metavar="MODEL2",
                   help="a second model run by kdefect-edge in the same rounds (arm `compare`), e.g. the same network "
                        "exported with --ood-gate knn; reports the per-round throughput ratio MODEL2 / MODEL")
    args = p.parse_args(argv)
    load1 = os.getloadavg()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kdefect-bench-") as tmp:
        work = Path(tmp)
        files = _folder(args.images, args.n, work / "images")
        clf = _open(args.model, args.threads)
        detector = isinstance(clf, EdgeDetector)
        if detector and args.parity_split:
            raise SystemExit("--parity-split checks a classifier's bit-exact resize; a detector's device and host "
                             "both prepare images with kdefect.core.detect_decode.prepare_image")
        xs = [clf.load_input(f)[0] if detector else clf.load_input(f) for f in files]
        clf.warm_up(3)
        for r in range(args.rounds):
            res = {"bare": bare(clf, xs), **({"bare_decode": bare_decode(clf, xs)} if detector else {}),
                   "naive": naive(clf, files)}
            for name, extra in EDGE_ARMS.items():
                res[name] = edge(args.model, work / "images", args.threads, work, extra)
            if args.compare:
                res["compare"] = edge(args.compare, work / "images", args.threads, work, [])
                res["compare_ratio"] = res["compare"]["images_per_s"] / res["edge"]["images_per_s"]
            res["edge_vs_bare"] = res["edge"]["images_per_s"] / res["bare"]["images_per_s"]
            res["edge_vs_naive"] = res["edge"]["images_per_s"] / res["naive"]["images_per_s"]
            rounds.append(res)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v['images_per_s']:.0f}/s" for k, v in res.items()
                                                  if isinstance(v, dict)), file=sys.stderr, flush=True)
    load2 = os.getloadavg()
    arms = ["bare", *(["bare_decode"] if detector else []), "naive", *EDGE_ARMS,
            *(["compare"] if args.compare else [])]
    med = {a: {k: statistics.median(r[a][k] for r in rounds) for k in rounds[0][a] if k != "backend"} for a in arms}
    ratios = {k: statistics.median(r[k] for r in rounds)
              for k in ("edge_vs_bare", "edge_vs_naive", *(["compare_ratio"] if args.compare else []))}
    e = med["edge"]
    result = {
        **header(), "model": str(args.model), "model_sha256": clf.sha256, "input": [*clf.size, clf.channels],
        "backend": clf.backend, "images": str(args.images), "n": args.n, "threads": args.threads,
        "rounds": args.rounds, "load_average_before_after": [load1[0], load2[0]],
        "median": med, "ratios_median": ratios, "per_round": rounds,
        "targets": {"edge_vs_bare_min": 0.95, "edge_vs_naive_min": 1.0, "peak_rss_mb_max": 100, "cold_start_s_max": 0.3},
        "meets": {"edge_vs_bare": ratios["edge_vs_bare"] >= 0.95, "edge_vs_naive": ratios["edge_vs_naive"] >= 1.0,
                  "peak_rss": e["peak_rss_mb"] <= 100, "cold_start": e["cold_start_to_first_decision_s"] <= 0.3},
        "note": args.note, **({"compare_model": str(args.compare)} if args.compare else {}),
    }
    if args.parity_split:
        result["parity"] = parity(args.model, args.parity_split)
    out = REPO / "tools" / "results" / args.out
    write_json(out.with_suffix(".json"), result)
    write_text(out.with_suffix(".md"), markdown(result, args))
    print(markdown(result, args))
    return 0


def markdown(res: dict, args: argparse.Namespace) -> str:
    med, rat, m = res["median"], res["ratios_median"], res["machine"]
    label = {"bare": "bare `invoke()` loop (inputs decoded, resized, quantised beforehand)",
             "naive": "hand-written loop: PIL open, convert, PIL bilinear resize, invoke",
             "edge": "`kdefect-edge` (prefetch thread, bit-exact resize, decisions, log, group fsync)",
             "edge_fsync_record": "`kdefect-edge --fsync record` (fsync per part)",
             "edge_no_prefetch": "`kdefect-edge --no-prefetch` (decode in the invoke thread)"}
    if "bare_decode" in med:  # a detector: the labels say what its loops do
        label = {"bare": label["bare"], "bare_decode": "bare loop + numpy box decoding, NMS and the reject rule",
                 "naive": "hand-written loop: PIL open, convert, PIL bilinear resize (the detection pipeline's own), "
                          "invoke; no decoding", **{k: v.replace("bit-exact resize", "PIL resize") for k, v in
                                                   label.items() if k.startswith("edge")}}
    if "compare" in med:
        label["compare"] = f"`kdefect-edge` with `{Path(res['compare_model']).name}` (--compare)"
    rows = "\n".join(f"| {label[a]} | {med[a]['images_per_s']:.1f} | {med[a]['p50_ms']:.2f} | {med[a]['p95_ms']:.2f} "
                     f"| {med[a]['cpu_ms_per_image']:.2f} |" for a in label)
    per = "; ".join(f"{r['edge_vs_bare']:.3f} / {r['edge_vs_naive']:.3f}" for r in res["per_round"])
    e = med["edge"]
    # the benchmark itself keeps about one core busy: a load average above 3/4 of the cores means other jobs ran
    busy = ("**shared with other jobs**" if max(res["load_average_before_after"]) > 0.75 * m["cpu_count"]
            else "otherwise idle")
    md = f"""# Edge runtime benchmark: {args.out}

`{res['command']}`

{res['date']}; {m['cpu']} ({m['machine']}), {m['cpu_count']} CPUs, {busy} (load average
{res['load_average_before_after'][0]:.1f} before, {res['load_average_before_after'][1]:.1f} after): absolute
figures are noisy, the ratios within a round are the comparison. Model `{Path(res['model']).name}`
({res['input'][0]}x{res['input'][1]}x{res['input'][2]}, sha256 {res['model_sha256'][:12]}), backend {res['backend']},
{res['threads']} interpreter thread(s), {res['n']} images per arm; median of {res['rounds']} rounds, arms
interleaved in each round. {res['note']}

| arm | images/s | p50 ms | p95 ms | CPU ms / image |
|---|---:|---:|---:|---:|
{rows}

- `kdefect-edge` / bare: **{rat['edge_vs_bare']:.3f}** (target >= 0.95); `kdefect-edge` / hand-written loop:
  **{rat['edge_vs_naive']:.3f}** (target >= 1.0). Per round (vs bare / vs loop): {per}.
- Cold start, process spawn to the first decision on disk: **{e['cold_start_to_first_decision_s']:.2f} s**
  (target <= 0.3 s; CPU time of a whole 1-image run, start-up and exit included: {e['startup_cpu_s']:.2f} s);
  peak RSS of the `kdefect-edge` process: **{e['peak_rss_mb']:.0f} MB** (target <= 100 MB).
- CPU ms / image: process CPU time (every thread) per image, which CPU contention does not inflate; for
  `kdefect-edge` without its start-up.
"""
    if "compare_ratio" in rat:
        md += f"- Throughput ratio compare / edge: **{rat['compare_ratio']:.3f}** (median of rounds).\n"
    if "parity" in res:
        p = res["parity"]
        md += (f"- Parity with the host pipeline on {p['n']} test images: `kdefect-edge` input tensor bit-exact on "
               f"**{p['edge_bit_exact']}/{p['n']}**; the hand-written loop's on {p['naive_bit_exact']}/{p['n']} "
               f"(max difference {p['naive_max_abs_diff']:.0f} grey levels).\n")
    return md


if __name__ == "__main__":
    sys.exit(main())
