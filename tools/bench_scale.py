"""Scale benchmark: pack + one training epoch (tfrecord vs folder), batch predict vs a bare loop, 1 vs 2 workers.

Every measurement runs in its own child process, so peak RSS (``ru_maxrss``)
is that step's alone.  The data set is generated (JPEG, random sizes in
``--min-px``..``--max-px``, 5 classes), never committed.  Both sources train
the same model with ``data.cache=none``: the situation where the decoded set
does not fit the cache (at the default 50,000 images it would not; with fewer
images ``auto`` would cache, so the benchmark forces the uncached path).

    nice -n 10 python tools/bench_scale.py --images 50000      # the issue's size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _bench import RESULTS, header, md_table

from kdefect.utils.io import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["good", "scratch", "spot", "crack", "patch"]


def make_images(root: Path, n: int, lo: int, hi: int, seed: int = 0) -> None:
    """n JPEGs in class folders: noise plus a class-specific mark (learnable, cheap to make)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % len(CLASSES)
        s = int(rng.integers(lo, hi + 1))
        a = (rng.normal(128, 20, (s, s, 3))).clip(0, 255).astype("uint8")
        im = Image.fromarray(a)
        if c:
            d, x, y = ImageDraw.Draw(im), *rng.integers(0, s // 2, 2)
            (d.line if c in (1, 3) else d.ellipse)([x, y, x + s // (2 + c), y + s // (1 + c)], fill=(30 * c,) * 3,
                                                   width=2)
        im.save(root / CLASSES[c] / f"{i:06d}.jpg", quality=90)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _overrides(a: dict[str, Any], source: str, name: str) -> list[str]:
    return [f"data.source={source}", f"runs_dir={a['work']}/runs", f"name={name}", f"data.image_size=[{a['px']}, {a['px']}]",
            "data.resize=squash", "data.cache=none", "data.sampling=shuffle", f"data.batch_size={a['batch']}",
            "model.backbone=tiny_cnn", "train.epochs=1", "trust.calibrate=false", "train.lr_schedule=constant"]


def child(kind: str, a: dict[str, Any]) -> dict[str, Any]:
    """One measured step, in this (child) process."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from kdefect.config import load_config

    t0 = time.perf_counter()
    if kind == "pack":
        from kdefect.data.tfrecord import pack_dataset

        man = pack_dataset(load_config(None, [f"data.source={a['work']}/images"]).data, f"{a['work']}/pack")
        return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(_rss_mb()),
                "shards": len(man["shards"]), "images": man["n_images"]}
    if kind in ("folder", "tfrecord"):
        from kdefect.engine import fit

        src = f"{a['work']}/images" if kind == "folder" else f"tfrecord:{a['work']}/pack"
        run = fit(load_config(None, _overrides(a, src, kind)), quiet=True)
        tr = run.read_json("metrics.json")["training"]
        return {"train_images_per_s": tr["train_images_per_s"], "train_images": tr["train_images"],
                "fit_seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(_rss_mb()), "run": str(run.path)}
    if kind == "predict":
        return _predict(a)
    raise ValueError(kind)


def _predict(a: dict[str, Any]) -> dict[str, Any]:
    """predict_parts end to end (files -> parts) vs a bare model.predict over already-decoded tensors."""
    from kdefect.data.images import list_files
    from kdefect.data.pipeline import load_images
    from kdefect.engine.batch_predict import predict_parts
    from kdefect.trust.outputs import load_model

    files = sorted(list_files(Path(a["work"]) / "images"))[: a["predict_images"]]
    pred_dir = Path(a["work"]) / "predict_in"
    pred_dir.mkdir(exist_ok=True)
    for f in files:
        link = pred_dir / f"{f.parent.name}_{f.name}"
        if not link.exists():
            link.symlink_to(f)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    samples.append(int(line.split()[1]) / 1024)
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    s = predict_parts(a["run"], [pred_dir], Path(a["work"]) / "preds", part_size=max(1, len(files) // 5))
    stop.set()
    th.join()
    half = samples[len(samples) // 2:] or samples
    model = load_model(Path(a["run"]) / "model.keras")
    x = load_images([str(f) for f in files], (a["px"], a["px"]))  # decoded up front: not timed
    model.predict(x[:64], verbose=0)
    t0 = time.perf_counter()
    model.predict(x.astype("float32"), batch_size=64, verbose=0)
    bare = len(x) / (time.perf_counter() - t0)
    return {"images": s["images"], "batch_predict_images_per_s": s["images_per_s"],
            "bare_predict_images_per_s": round(bare, 1), "ratio": round(s["images_per_s"] / bare, 3),
            "rss_mb_second_half": [round(min(half)), round(max(half))], "peak_rss_mb": round(_rss_mb())}


def drop_page_cache() -> bool:
    """Evict the page cache (root only), so the next epoch reads every image from disk: the situation of a data
    set larger than the machine's memory, or one on storage that was not read lately."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def run_child(kind: str, a: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(a)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=3600)
    if out.returncode:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker_curves(work: Path, data: Path) -> dict[str, list[float]]:
    """history.csv losses of a two-worker run and a single-process run (same global batch and seed)."""
    import csv

    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    base = [f"data.source={data}", "data.synthetic.n_per_class=24", "data.image_size=[32, 32]", "data.batch_size=16",
            "data.cache=memory", "model.backbone=tiny_cnn", "model.dropout=0.0", "train.epochs=5",
            "train.optimizer=sgd", "train.learning_rate=0.01", "train.lr_schedule=constant", "train.monitor=val_loss",
            "trust.calibrate=false", "name=mw"]
    script = "import sys; from kdefect.config import load_config; from kdefect.engine import fit; " \
             "fit(load_config(None, sys.argv[1:]), quiet=True)"
    procs = []
    try:
        for i in range(3):
            env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
            env.pop("TF_CONFIG", None)
            extra = [f"runs_dir={work}/single"]
            if i < 2:
                env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
                extra = [f"runs_dir={work}/multi", "train.strategy=multi_worker"]
            procs.append(subprocess.Popen([sys.executable, "-c", script, *base, *extra], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in procs:
            p.wait(timeout=900)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def losses(run: Path) -> list[float]:
        return [round(float(r["loss"]), 5) for r in csv.DictReader((run / "history.csv").open())]

    return {"single_process": losses(work / "single" / "mw"), "two_workers": losses(work / "multi" / "mw")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--min-px", type=int, default=64)
    ap.add_argument("--max-px", type=int, default=128)
    ap.add_argument("--px", type=int, default=64, help="training input size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--predict-images", type=int, default=50000)
    ap.add_argument("--cold", action="store_true",
                    help="also train each source once right after dropping the page cache (needs root)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        a = {"work": str(work), "px": args.px, "batch": args.batch, "predict_images": args.predict_images}
        t0 = time.perf_counter()
        make_images(work / "images", args.images, args.min_px, args.max_px)
        gen_s = round(time.perf_counter() - t0, 1)
        res: dict[str, Any] = {**header(), "images": args.images, "px_range": [args.min_px, args.max_px],
                               "train_px": args.px, "batch": args.batch, "generate_seconds": gen_s}
        res["pack"] = run_child("pack", a)
        res["train_folder"] = run_child("folder", a)
        res["train_tfrecord"] = run_child("tfrecord", a)
        res["tfrecord_vs_folder_images_per_s"] = round(res["train_tfrecord"]["train_images_per_s"]
                                                       / res["train_folder"]["train_images_per_s"], 3)
        if args.cold:
            for k in ("folder", "tfrecord"):
                if not drop_page_cache():
                    raise SystemExit("--cold needs root to write /proc/sys/vm/drop_caches")
                res[f"train_{k}_cold"] = run_child(k, a)
            res["cold_tfrecord_vs_folder_images_per_s"] = round(res["train_tfrecord_cold"]["train_images_per_s"]
                                                                / res["train_folder_cold"]["train_images_per_s"], 3)
        res["predict"] = run_child("predict", {**a, "run": res["train_tfrecord"]["run"]})
        from kdefect.config import SyntheticConfig
        from kdefect.data.synthetic import materialize_synthetic

        syn = materialize_synthetic(SyntheticConfig(n_per_class=24, size=32, seed=0, contrast=2.5), "folder",
                                    work / "cache")
        res["loss_curves"] = worker_curves(work / "mw", syn)
    write_json(RESULTS / "scale.json", res)
    rows = [{"step": "pack", "seconds": res["pack"]["seconds"], "peak RSS MB": res["pack"]["peak_rss_mb"],
             "images/s": ""},
            *[{"step": f"fit 1 epoch, {k}", "seconds": res[f"train_{k}"]["fit_seconds"],
               "peak RSS MB": res[f"train_{k}"]["peak_rss_mb"], "images/s": res[f"train_{k}"]["train_images_per_s"]}
              for k in ("folder", "tfrecord", *(("folder_cold", "tfrecord_cold") if args.cold else ()))],
            {"step": f"predict --out-dir ({res['predict']['images']} images)", "seconds": "",
             "peak RSS MB": res["predict"]["peak_rss_mb"], "images/s": res["predict"]["batch_predict_images_per_s"]},
            {"step": "bare model.predict on decoded tensors", "seconds": "", "peak RSS MB": "",
             "images/s": res["predict"]["bare_predict_images_per_s"]}]
    curves = res["loss_curves"]
    md = (f"# Scale benchmark\n\n`{res['command']}` on {res['machine']['machine']}, {res['machine']['cpu_count']} "
          f"cores ({res['machine']['cpu']}), {res['date']}.\n\n{args.images} generated JPEGs, {args.min_px}-"
          f"{args.max_px} px, trained at {args.px} px, batch {args.batch}, tiny_cnn, data.cache=none on both "
          f"sources.\n\n" + md_table(rows, ["step", "seconds", "peak RSS MB", "images/s"]) +
          f"\n\ntfrecord / folder training images/s: **{res['tfrecord_vs_folder_images_per_s']}**"
          + (f" (page cache dropped before each fit, `_cold` rows: "
             f"**{res['cold_tfrecord_vs_folder_images_per_s']}**)" if args.cold else "") + "; "
          f"batch predict / bare loop: **{res['predict']['ratio']}**; predict RSS over the 2nd half of the job: "
          f"{res['predict']['rss_mb_second_half']} MB.\n\nLoss per epoch, same global batch (16) and seed:\n\n"
          + md_table([{"epoch": i + 1, "single process": s, "two workers": t}
                      for i, (s, t) in enumerate(zip(curves["single_process"], curves["two_workers"]))],
                     ["epoch", "single process", "two workers"]) + "\n")
    write_text(RESULTS / "scale.md", md)
    print(md)


if __name__ == "__main__":
    main()
