"""Coral Edge TPU readiness: a compatibility report per op, and the compiler when it is installed.

The report is computed from the .tflite file alone, against the Edge TPU
compiler's documented supported-op table and model requirements
(https://coral.ai/docs/edgetpu/models-intro/): 8-bit quantized tensors,
static shapes (batch 1), at most 3 dimensions larger than 1, supported ops
only. The compiler maps ops in graph order and stops at the first op it
cannot map: everything after it runs on the CPU, so the report says where
that happens. TF-free (LiteRT only).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.sidecar import read_sidecar, sidecar_path, write_sidecar
from kdefect.export.litert_info import open_model, ops, tensors
from kdefect.utils.io import write_json, write_text

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
DOCS = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
# TFLite builtin names of the ops in the Edge TPU compiler's supported-operations table.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV",
})
_QUANT = (np.int8, np.uint8)
_INDEX_TYPES = (np.int32, np.int64)  # biases, shapes, axes: allowed


def _tensor_problems(t: dict[str, Any], activation: bool) -> list[str]:
    """Documented tensor requirements; the shape rules concern activations, not constant weights."""
    problems = []
    if np.dtype(t["dtype"]).type not in (*_QUANT, *_INDEX_TYPES):
        problems.append(f"tensor '{t['name']}' is {np.dtype(t['dtype']).name}, not 8-bit quantized")
    if not activation:
        return problems
    sig = [int(d) for d in t.get("shape_signature", t["shape"])]
    if any(d < 0 for d in sig):
        problems.append(f"tensor '{t['name']}' has a dynamic shape {sig}")
    shape = [int(d) for d in t["shape"]]
    if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
        problems.append(f"tensor '{t['name']}' {shape}: only the 3 innermost dimensions may be larger than 1")
    return problems


def compatibility_report(model_path: str | Path) -> dict[str, Any]:
    """Per-op mapping verdict, I/O and batch checks for ``model_path``."""
    it = open_model(model_path)
    td = tensors(it)
    op_list = ops(it)
    activations = {i for op in op_list for i in op["outputs"]} | {int(d["index"]) for d in it.get_input_details()}
    rows = []
    first_bad = None
    for op in op_list:
        reasons = []
        if op["op"] not in SUPPORTED_OPS:
            reasons.append(f"{op['op']} is not in the Edge TPU supported-op table")
        for idx in op["inputs"] + op["outputs"]:
            if idx >= 0:
                reasons += _tensor_problems(td[idx], idx in activations)
        ok = not reasons
        if not ok and first_bad is None:
            first_bad = op["index"]
        rows.append({"index": op["index"], "op": op["op"], "edgetpu": ok, "reasons": reasons})
    inp, out = it.get_input_details(), it.get_output_details()
    batch_ok = all(int(d["shape"][0]) == 1 and int(d.get("shape_signature", d["shape"])[0]) == 1 for d in inp)
    io = {"inputs": [np.dtype(d["dtype"]).name for d in inp], "outputs": [np.dtype(d["dtype"]).name for d in out]}
    n_ok = sum(r["edgetpu"] for r in rows)
    return {
        "model": str(model_path),
        "ops_total": len(rows),
        "ops_mappable": n_ok,
        "fully_mappable": n_ok == len(rows) and batch_ok,
        "first_unmappable_op": first_bad,
        "static_batch_1": batch_ok,
        "io_types": io,
        "uint8_io": all(t == "uint8" for t in io["inputs"] + io["outputs"]),
        "unsupported_ops": sorted({r["op"] for r in rows if r["op"] not in SUPPORTED_OPS}),
        "ops": rows,
        "reference": DOCS,
    }


def report_text(rep: dict[str, Any]) -> str:
    """Human summary: one line per op plus the verdict."""
    lines = [f"Edge TPU compatibility report for {rep['model']}",
             f"ops mappable: {rep['ops_mappable']}/{rep['ops_total']}; static batch 1: {rep['static_batch_1']}; "
             f"I/O: {rep['io_types']}"]
    if rep["first_unmappable_op"] is not None:
        lines.append(f"the compiler stops at op #{rep['first_unmappable_op']}: it and every op after it run on the CPU")
    for r in rep["ops"]:
        lines.append(f"  #{r['index']:>3} {r['op']:<24} {'edgetpu' if r['edgetpu'] else 'CPU   '} "
                     + "; ".join(r["reasons"]))
    lines.append("verdict: " + ("fully mappable to the Edge TPU" if rep["fully_mappable"] else "NOT fully mappable"))
    return "\n".join(lines) + "\n"


def write_report(model_path: str | Path, rep: dict[str, Any] | None = None) -> Path:
    """Write ``<model>_edgetpu_report.json`` and ``.txt`` beside the model; return the JSON path."""
    rep = rep or compatibility_report(model_path)
    base = Path(model_path).with_suffix("")
    write_text(f"{base}_edgetpu_report.txt", report_text(rep))
    return write_json(f"{base}_edgetpu_report.json", rep)


def compile_edgetpu(model_path: str | Path, timeout_s: int = 600) -> dict[str, Any]:
    """Run ``edgetpu_compiler`` when it is on PATH; keep ``*_edgetpu.tflite`` and its log beside the model."""
    exe = shutil.which(COMPILER)
    model_path = Path(model_path)
    if exe is None:
        msg = (f"{COMPILER} not found on PATH: skipped Edge TPU compilation (the compatibility report was still "
               "written). Install it on x86-64 Debian/Ubuntu from https://coral.ai/docs/edgetpu/compiler/ and rerun.")
        log.warning(msg)
        return {"compiled": False, "message": msg}
    proc = subprocess.run([exe, "-s", "-o", str(model_path.parent), str(model_path)], capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    log_path = model_path.with_name(model_path.stem + "_edgetpu_compiler.log")
    write_text(log_path, proc.stdout + proc.stderr)
    compiled = model_path.with_name(model_path.stem + "_edgetpu.tflite")
    ok = proc.returncode == 0 and compiled.is_file()
    if not ok:
        log.warning("%s failed (exit %d); see %s", COMPILER, proc.returncode, log_path)
    elif sidecar_path(model_path).is_file():  # the device refuses a model without its own signed sidecar
        write_sidecar(compiled, read_sidecar(model_path, verify=False))
    return {"compiled": ok, "model": str(compiled) if ok else None, "log": str(log_path), "returncode": proc.returncode}
