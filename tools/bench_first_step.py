"""Benchmark: the cost of a fit's first epoch with and without ``models.compiled.build_training_state``.

Each arm runs in a fresh process: build the model, compile it (the detector through ``compile_detector``, whose
prebuild is switched off for the 'without' arm), optionally build the training state, then ``fit`` a few steps on random data (validated on the same batches), counting how often the
train step is traced. Without the prebuild, the first call creates the optimizer's slots and the loss trackers and
``tf.function`` traces the step twice. Writes tools/results/first_step.{json,md}.

    python tools/bench_first_step.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, header, md_table, write_md

from kdefect.utils.io import write_json

MODELS = {"yolov8_xs_128": "YOLOv8-xs detector, 128 px, batch 16 (configs/neu_det_yolov8.yaml)",
          "tiny_cnn_64": "tiny_cnn + SE classifier, 64 px, batch 32 (the quick start before tiny_cnn_s2)"}


def arm(model: str, prebuild: bool, steps: int) -> dict:
    """One measurement, in this process (the parent runs each in a fresh one)."""
    import numpy as np

    from kdefect.keras import keras
    from kdefect.models import detectors
    from kdefect.models.compiled import build_training_state

    rng = np.random.default_rng(0)
    if not prebuild:  # compile_detector's own prebuild off: the compile path as it was
        detectors.build_training_state = lambda model: None
    if model.startswith("yolov8"):
        m, batch, size = detectors.build_detector("yolov8", "yolo_v8_xs", 6, (128, 128)), 16, 128
        t0 = time.perf_counter()  # from compile (with its prebuild, if on) to the end of the first epoch
        detectors.compile_detector(m, "yolov8", 0.002)
        boxes = np.full((batch * steps, 50, 4), -1, np.float32)
        classes = np.full((batch * steps, 50), -1, np.float32)
        boxes[:, 0], classes[:, 0] = [10, 10, 60, 60], 1
        y = {"boxes": boxes, "classes": classes}
    else:
        from kdefect.tasks.classify import build_classifier

        m, batch, size = build_classifier(5, "tiny_cnn", (64, 64), attention="se", pooling="max"), 32, 64
        t0 = time.perf_counter()
        m.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        if prebuild:
            build_training_state(m)
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, batch * steps)]
    x = (rng.random((batch * steps, size, size, 3)) * 255).astype(np.float32)
    traces: list[int] = []
    step = type(m).train_step

    def counted(self, *a, **k):  # runs only while the train function is traced
        traces.append(1)
        return step(self, *a, **k)

    type(m).train_step = counted
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, validation_data=(x, y))
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, validation_data=(x, y))
    return {"model": model, "prebuild": prebuild, "steps": steps, "traces": len(traces),
            "first_epoch_s": round(first, 1), "next_epoch_s": round(time.perf_counter() - t1, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--arm", nargs=2, metavar=("MODEL", "PREBUILD"), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.arm:
        print("RESULT " + json.dumps(arm(args.arm[0], args.arm[1] == "1", args.steps)))
        return
    rows = []
    for model in args.models:
        for prebuild in (False, True):
            out = subprocess.run([sys.executable, __file__, "--arm", model, str(int(prebuild)), "--steps",
                                  str(args.steps)], capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:]))
            print(rows[-1], flush=True)
    data = {**header(), "models": {k: MODELS[k] for k in args.models}, "rows": rows}
    write_json(RESULTS / "first_step.json", data)
    text = ("# A fit's first epoch, with and without building the training state first\n\n"
            f"Command: `{data['command']}`  \nDate: {data['date']}  \n"
            f"Machine: {data['machine']['cpu']}, {data['machine']['cpu_count']} cores\n\n"
            + "".join(f"- `{k}`: {v}\n" for k, v in data["models"].items())
            + "\nEach row is a fresh process: fit one epoch of `steps` random batches with the same batches as validation data, then a second epoch. `traces` "
              "counts the train step's Python calls (one per trace); `first_epoch_s` includes the tracing.\n\n"
            + md_table(rows, ["model", "prebuild", "steps", "traces", "first_epoch_s", "next_epoch_s"]))
    write_md(RESULTS / "first_step.md", text)
    print(text)


if __name__ == "__main__":
    main()
