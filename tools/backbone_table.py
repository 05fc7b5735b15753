"""Parameters and FLOPs of every registered backbone as a 6-class kdefect classifier.

FLOPs convention: one multiply-add = 2 FLOPs (what tf.profiler's float_ops
counts); the table also gives MACs = FLOPs / 2, the figure papers usually
quote ("MobileNetV2 300M MAdds"). Counted by tf.compat.v1.profiler on the
frozen graph of the flat model's concrete function, batch 1, default input
size, weights none.

    python tools/backbone_table.py [--out tools/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

from kdefect.keras import keras, tf
from kdefect.models import BACKBONES
from kdefect.tasks.classify import build_classifier
from kdefect.utils.io import write_json, write_text


def count_flops(model: keras.Model) -> int:
    """Float ops of one forward pass (batch 1) via tf.compat.v1.profiler."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *model.input.shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return int(info.total_float_ops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tools/results")
    parser.add_argument("--num-classes", type=int, default=6)
    args = parser.parse_args(argv)
    rows = []
    for name in BACKBONES.names():
        meta = BACKBONES.meta(name)
        size = meta["default_size"]
        model = build_classifier(args.num_classes, name, (size, size))
        flops = count_flops(model)
        rows.append({
            "backbone": name, "input_size": size, "params": model.count_params(),
            "trainable_params": int(sum(v.shape.num_elements() for v in model.trainable_weights)),
            "flops": flops, "macs": flops // 2, "preprocess": meta["preprocess"],
            "supports_alpha": meta["supports_alpha"], "imagenet": meta["imagenet"],
        })
        keras.backend.clear_session()
    info = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "tensorflow": tf.__version__},
        "convention": "flops = tf.profiler float_ops, 1 multiply-add = 2 FLOPs; macs = flops / 2; batch 1; "
                      f"weights none, alpha 1.0, no attention, num_classes={args.num_classes}",
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "backbones.json", info)
    lines = [
        "# Backbones: parameters and FLOPs", "",
        f"Command: `{info['command']}`  ", f"Date: {info['date']}  ",
        f"Machine: {info['machine']['platform']}, {info['machine']['cpu_count']} CPUs, TF {tf.__version__}  ",
        f"Convention: {info['convention']}.", "",
        "| backbone | input | params | GFLOPs | GMACs | preprocess | alpha | ImageNet |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['input_size']} | {r['params']:,} | {r['flops'] / 1e9:.3f} | "
            f"{r['macs'] / 1e9:.3f} | {r['preprocess']} | {'yes' if r['supports_alpha'] else 'no'} | "
            f"{'yes' if r['imagenet'] else 'no'} |"
        )
    write_text(out / "backbones.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
