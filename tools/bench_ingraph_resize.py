"""Measure issue 15's option "move the resize into the model graph" before building it.

    python tools/bench_ingraph_resize.py --run RUN --images DIR [--n 300] [--threads 2] [--rounds 3] [--out NAME]

RUN is a kdefect classification run with ``export/model_int8_ptq.tflite`` (today's device model: the device
decodes, resizes bit-exactly like training, quantises, invokes). The script wraps the run's Keras model behind a
``Resizing`` layer that takes the camera's full image (the size of the first image in DIR; every image must have
it), converts that to INT8 with the same exporter, and times, interleaved in each round and in one process:

- ``bare_today``: invoke on inputs decoded, resized and quantised beforehand (the issue's bare loop);
- ``device_today``: a loader thread decodes + resizes bit-exactly + quantises (``EdgeClassifier.load_input``)
  while the main thread invokes and decides, the structure of ``kdefect-edge``;
- ``bare_ingraph``: invoke of the wrapped model on decoded full-size images (its bare loop: the resize is inside);
- ``device_ingraph``: a loader thread only decodes and quantises, the main thread invokes the wrapped model
  and applies the same decision rule.

It also reports what the change would cost in agreement: the wrapped model's top-1 against today's INT8 model,
and the pixel difference between the graph's resize (``tf.image.resize`` bilinear, no antialiasing: the op
TFLite has) and the training pipeline's antialiased resize.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from _bench import header  # noqa: E402

from kdefect.utils.io import write_json, write_text  # noqa: E402


def _decode(f: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(f) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def _loop(items: list, prepare: Callable[[Any], np.ndarray], run: Callable[[np.ndarray], Any],
          prefetch: bool) -> float:
    """Images/s of prepare -> run over ``items``; with ``prefetch`` a loader thread prepares ahead (queue of 4)."""
    t0 = time.perf_counter()
    if not prefetch:
        for it in items:
            run(prepare(it))
        return len(items) / (time.perf_counter() - t0)
    q: queue.Queue = queue.Queue(maxsize=4)

    def load() -> None:
        for it in items:
            q.put(prepare(it))
        q.put(None)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    while (x := q.get()) is not None:
        run(x)
    th.join()
    return len(items) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="ingraph_resize")
    args = p.parse_args(argv)

    from kdefect.core.run import RunDir
    from kdefect.data.pipeline import load_images, resize_mode
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.edge.interpreter import TFLiteRunner
    from kdefect.export.tflite import to_tflite
    from kdefect.keras import keras, tf
    from kdefect.tasks.heads import load_model

    run = RunDir.open(args.run)
    cfg = run.config()
    today = run.path / "export" / "model_int8_ptq.tflite"
    files = sorted(f for f in args.images.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    files = files[: args.n]
    raw = np.stack([_decode(f) for f in files])  # every image must share the camera's size
    h0, w0 = raw.shape[1:3]
    h, w = cfg.data.image_size

    model = load_model(run.model_path)
    inp = keras.Input((h0, w0, 3))
    wrapped = keras.Model(inp, model(keras.layers.Resizing(h, w, interpolation="bilinear")(inp)))
    ingraph = run.path / "export" / "model_int8_ingraph_resize.tflite"
    to_tflite(wrapped, ingraph, mode="int8", representative=raw[:200])

    clf = EdgeClassifier(today, threads=args.threads)
    r_today = clf.runner
    r_in = TFLiteRunner(ingraph, num_threads=args.threads)
    xs_today = [clf.load_input(f) for f in files]
    xs_in = [r_in.quantize(x) for x in raw]

    def invoke(r: Any) -> Callable[[np.ndarray], Any]:
        interp, din, dout = r.interpreter, r.input_detail["index"], r.output_details[0]["index"]

        def go(q: np.ndarray) -> Any:
            interp.set_tensor(din, q)
            interp.invoke()
            return interp.get_tensor(dout)
        return go

    arms = {
        "bare_today": lambda: _loop(xs_today, lambda x: x, invoke(r_today), False),
        "device_today": lambda: _loop(files, clf.load_input, clf.decide_input, True),
        "bare_ingraph": lambda: _loop(xs_in, lambda x: x, invoke(r_in), False),
        "device_ingraph": lambda: _loop(files, lambda f: r_in.quantize(_decode(f)),
                                        lambda q: clf.rule(r_in.run_quantized(q)[0].reshape(-1)), True),
    }
    for fn in arms.values():  # warm-up
        fn()
    rounds = [{k: fn() for k, fn in arms.items()} for _ in range(args.rounds)]
    med = {k: statistics.median(r[k] for r in rounds) for k in arms}

    # agreement: the wrapped model vs today's INT8 model, and the two resizes
    top_today = np.array([int(np.argmax(invoke(r_today)(x))) for x in xs_today])
    top_in = np.array([int(np.argmax(invoke(r_in)(x))) for x in xs_in])
    host = load_images([str(f) for f in files], (h, w), 3, resize=resize_mode(cfg.data)).astype(np.float32)
    graph = tf.image.resize(raw, (h, w), method="bilinear", antialias=False).numpy()
    diff = np.abs(np.round(graph) - host)
    res = {
        **header(), "run": str(run.path), "today_model": str(today), "ingraph_model": str(ingraph),
        "camera_size": [int(h0), int(w0)], "model_size": [int(h), int(w)], "n": len(files), "threads": args.threads,
        "rounds": rounds, "median_images_per_s": med,
        "ratios": {"device_today/bare_today": med["device_today"] / med["bare_today"],
                   "device_ingraph/bare_ingraph": med["device_ingraph"] / med["bare_ingraph"],
                   "device_ingraph/bare_today": med["device_ingraph"] / med["bare_today"],
                   "device_ingraph/device_today": med["device_ingraph"] / med["device_today"]},
        "top1_agreement_ingraph_vs_today": float((top_in == top_today).mean()),
        "resize_abs_diff_grey_levels": {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)),
                                        "max": float(diff.max()),
                                        "bit_exact_images": int(sum(np.array_equal(np.round(g), t)
                                                                    for g, t in zip(graph, host)))},
    }
    out = REPO / "tools" / "results" / args.out
    write_json(out.with_suffix(".json"), res)
    rt = res["ratios"]
    dd = res["resize_abs_diff_grey_levels"]
    md = f"""# Resize inside the model graph (issue 15 option), measured before building it

`{res['command']}`

{res['date']}; {res['machine']['cpu']}, {res['machine']['cpu_count']} CPUs; {args.threads} interpreter thread(s);
{len(files)} images of {h0}x{w0} -> model input {h}x{w}; median of {args.rounds} rounds, arms interleaved.
Today's model: `{today.name}`; the wrapped one: a `Resizing({h}, {w}, bilinear)` layer in front of the same Keras
model, INT8 through the same exporter.

| arm | images/s |
|---|---:|
| bare loop, today's model (inputs decoded, resized, quantised beforehand) | {med['bare_today']:.1f} |
| device loop, today (loader thread: decode + bit-exact resize + quantise; main: invoke + decision) | {med['device_today']:.1f} |
| bare loop, resize in the graph (inputs decoded and quantised beforehand) | {med['bare_ingraph']:.1f} |
| device loop, resize in the graph (loader thread: decode + quantise; main: invoke + decision) | {med['device_ingraph']:.1f} |

- device / bare, today: **{rt['device_today/bare_today']:.3f}**; with the resize in the graph:
  **{rt['device_ingraph/bare_ingraph']:.3f}** against its own bare loop, **{rt['device_ingraph/bare_today']:.3f}**
  against today's bare loop; in-graph device loop / today's device loop: **{rt['device_ingraph/device_today']:.3f}**.
- Agreement: the wrapped model's top-1 equals today's INT8 model's on
  **{100 * res['top1_agreement_ingraph_vs_today']:.1f} %** of the images.
- The graph's resize (bilinear without antialiasing, the op TFLite has) against the training pipeline's antialiased
  resize: mean {dd['mean']:.2f}, p99 {dd['p99']:.0f}, max {dd['max']:.0f} grey levels; bit-exact on
  {dd['bit_exact_images']}/{len(files)} images. The model would see other pixels than it was trained and
  validated on, unless training resized the same way.
"""
    write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
