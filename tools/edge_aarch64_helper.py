"""Host-side helper of tools/edge_aarch64_check.sh: make a tiny model, pick images, compare the two logs.

  python tools/edge_aarch64_helper.py make-model OUT.tflite IMAGES_DIR [--size 64]
  python tools/edge_aarch64_helper.py make-mobilenet OUT.tflite [--size 224]   # timing stand-in (bench)
  python tools/edge_aarch64_helper.py pick-images SRC_DIR DEST_DIR [--n 8]
  python tools/edge_aarch64_helper.py dump MODEL.tflite IMAGES_DIR OUT.json   # TF-free: runs under qemu too
  python tools/edge_aarch64_helper.py compare X86.jsonl ARM.jsonl OUT.json [--dumps X86.json ARM.json] [--meta K=V ...]

``make-model`` uses TensorFlow (host only): a tiny CNN trained for a few epochs on the images (labels from
the ``<class>_<n>`` file names, NEU style), exported INT8 with uint8 I/O and a sidecar, like ``kdefect tflite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kdefect from this checkout, installed or not

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXT)


def _label(p: Path) -> str:
    return p.stem.rsplit("_", 1)[0] if "_" in p.stem else p.parent.name


def make_model(out: Path, folder: Path, size: int, per_class: int = 30, epochs: int = 40) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from edge.conftest import build_tflite

    from kdefect.edge.preprocess import load_image, prepare

    files = _images(folder)
    labels = sorted({_label(p) for p in files})
    chosen = [p for lab in labels for p in [f for f in files if _label(f) == lab][:per_class]]
    x = np.stack([prepare(load_image(p), (size, size), resize="squash") for p in chosen])  # its sidecar: squash
    y = np.asarray([labels.index(_label(p)) for p in chosen])
    return build_tflite(out, (size, size), labels, x, y, epochs=epochs, widths=(16, 32, 32))


def make_mobilenet(out: Path, size: int = 224, alpha: float = 0.35) -> Path:
    """A NEU-sized stand-in for timing only: MobileNetV2 (random weights, 6 classes), INT8 uint8 I/O + sidecar."""
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.export.tflite import to_tflite
    from kdefect.keras import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    base = keras.applications.MobileNetV2((size, size, 3), alpha=alpha, include_top=False, weights=None, pooling="avg")
    model = keras.Model(inp, keras.layers.Dense(6, activation="softmax")(base(x)))
    rep = np.random.default_rng(0).integers(0, 256, (16, size, size, 3)).astype(np.float32)
    path = to_tflite(model, out, "int8", representative=rep)
    labels = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    write_sidecar(path, Sidecar(sha256="", task="classify", labels=labels, input=InputSpec(size=[size, size]),
                                quantization="int8", source_run="tools/edge_aarch64_helper.py make-mobilenet"))
    return path


def pick_images(src: Path, dest: Path, n: int) -> list[Path]:
    """``n`` images spread over the classes (round robin over the sorted per-class lists)."""
    files = _images(src)
    by_class: dict[str, list[Path]] = {}
    for p in files:
        by_class.setdefault(_label(p), []).append(p)
    picked: list[Path] = []
    k = 0
    while len(picked) < n and any(k < len(v) for v in by_class.values()):
        picked += [v[k] for v in by_class.values() if k < len(v)]
        k += 1
    dest.mkdir(parents=True, exist_ok=True)
    for p in picked[:n]:
        shutil.copy(p, dest / p.name)
    return picked[:n]


def dump(model: Path, folder: Path, out: Path) -> None:
    """Per image: sha256 of the preprocessed model input and the raw (quantised) output, to locate a difference."""
    import hashlib

    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.edge.interpreter import quantize_input

    clf = EdgeClassifier(model, threads=1)
    interp, din = clf.runner.interpreter, clf.runner.input_detail
    rows = {}
    for p in _images(folder):
        q = quantize_input(clf.load(p)[None], din)
        interp.set_tensor(din["index"], q)
        interp.invoke()
        raw = interp.get_tensor(clf.runner.output_details[clf.runner.roles["main"]]["index"]).reshape(-1)
        rows[p.name] = {"input_sha256": hashlib.sha256(q.tobytes()).hexdigest(), "raw_output": raw.tolist()}
    out.write_text(json.dumps({"backend": clf.backend, "images": rows}, indent=1))


def compare(x86: Path, arm: Path, out: Path, meta: dict[str, str], dumps: list[Path] | None = None,
            same_interp: Path | None = None) -> dict:
    """Labels of the two logs; with ``dumps`` (x86, arm) the inputs and raw outputs; with ``same_interp`` (an
    x86 dump made with the aarch64 run's interpreter package) whether the raw INT8 outputs are bit-identical."""
    from kdefect.core.decision_log import read_log
    from kdefect.utils.io import write_json

    a = {Path(r["source"]).name: r for r in read_log(x86)}
    b = {Path(r["source"]).name: r for r in read_log(arm)}
    rows = []
    for name in sorted(set(a) | set(b)):
        ra, rb = a.get(name), b.get(name)
        same = bool(ra and rb and ra["label"] == rb["label"])
        diff = (max(abs(ra["probs"][k] - rb["probs"][k]) for k in ra["probs"])
                if same and ra["probs"] and rb["probs"] else None)
        rows.append({"image": name, "x86": ra and ra["label"], "aarch64": rb and rb["label"], "same_label": same,
                     "max_prob_diff": diff, "x86_score": ra and ra["score"], "aarch64_score": rb and rb["score"]})
    if dumps:
        da, db = (json.loads(Path(d).read_text())["images"] for d in dumps)
        for r in rows:
            a_, b_ = da.get(r["image"], {}), db.get(r["image"], {})
            r["same_input"] = a_.get("input_sha256") == b_.get("input_sha256") is not None
            r["raw_output_x86"], r["raw_output_aarch64"] = a_.get("raw_output"), b_.get("raw_output")
    same_raw = None
    if same_interp and dumps:
        ds, db = (json.loads(Path(d).read_text())["images"] for d in (same_interp, dumps[1]))
        same_raw = bool(db) and all(ds.get(k, {}).get("raw_output") == v["raw_output"] for k, v in db.items())
        meta = {**meta, "same_interpreter_x86_backend": json.loads(Path(same_interp).read_text())["backend"]}
    result = {
        "all_equal": bool(rows) and all(r["same_label"] for r in rows) and same_raw is not False,
        "labels_equal_vs_x86": bool(rows) and all(r["same_label"] for r in rows),
        "inputs_identical": all(r.get("same_input") for r in rows) if dumps else None,
        "raw_int8_outputs_identical_same_interpreter": same_raw,
        "raw_int8_outputs_identical_vs_x86": (all(r["raw_output_x86"] == r["raw_output_aarch64"] for r in rows)
                                              if dumps else None),
        "n_images": len(rows),
        "identical_probs": bool(rows) and all(r["max_prob_diff"] == 0 for r in rows),
        "max_prob_diff": max((r["max_prob_diff"] or 0) for r in rows) if rows else None,
        "note": "Timing under qemu user-mode emulation is not meaningful and is not reported.",
        **meta,
        "images": rows,
    }
    write_json(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("out", type=Path)
    m.add_argument("images", type=Path)
    m.add_argument("--size", type=int, default=64)
    mm = sub.add_parser("make-mobilenet")
    mm.add_argument("out", type=Path)
    mm.add_argument("--size", type=int, default=224)
    pi = sub.add_parser("pick-images")
    pi.add_argument("src", type=Path)
    pi.add_argument("dest", type=Path)
    pi.add_argument("--n", type=int, default=8)
    c = sub.add_parser("compare")
    c.add_argument("x86", type=Path)
    c.add_argument("arm", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--meta", nargs="*", default=[])
    c.add_argument("--dumps", nargs=2, type=Path)
    c.add_argument("--same-interp-dump", type=Path)
    d = sub.add_parser("dump")
    d.add_argument("model", type=Path)
    d.add_argument("images", type=Path)
    d.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "make-model":
        print(make_model(args.out, args.images, args.size))
    elif args.cmd == "make-mobilenet":
        print(make_mobilenet(args.out, args.size))
    elif args.cmd == "pick-images":
        for f in pick_images(args.src, args.dest, args.n):
            print(f)
    elif args.cmd == "dump":
        dump(args.model, args.images, args.out)
    else:
        res = compare(args.x86, args.arm, args.out, dict(kv.split("=", 1) for kv in args.meta), args.dumps,
                      args.same_interp_dump)
        print(json.dumps({k: v for k, v in res.items() if k != "images"}, indent=2))
        return 0 if res["all_equal"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
