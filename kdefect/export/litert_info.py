"""Read what is inside a .tflite file with LiteRT (no TensorFlow): ops, tensors, I/O quantisation, sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ExportError

WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}


def open_model(path: str | Path) -> Any:
    """An allocated interpreter without the default delegates (so constant buffers stay readable)."""
    from ai_edge_litert import interpreter as litert  # lazy: LiteRT loads only to read a .tflite

    if not Path(path).is_file():
        raise ExportError(f"TFLite model '{path}' does not exist.")
    try:
        it = litert.Interpreter(model_path=str(path),
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"'{path}' is not a loadable TFLite model: {exc}") from exc
    return it


def ops(interpreter: Any) -> list[dict[str, Any]]:
    """Every op in execution order: index, name, input / output tensor indices."""
    return [
        {"index": int(o["index"]), "op": o["op_name"], "inputs": [int(i) for i in o["inputs"]],
         "outputs": [int(i) for i in o["outputs"]]}
        for o in interpreter._get_ops_details()
    ]


def tensors(interpreter: Any) -> dict[int, dict[str, Any]]:
    return {int(t["index"]): t for t in interpreter.get_tensor_details()}


def io_spec(detail: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready dtype, shape and (scale, zero point) of an input / output tensor."""
    scale, zp = detail["quantization"]
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape"]],
            "shape_signature": [int(d) for d in detail.get("shape_signature", detail["shape"])],
            "scale": float(scale) if scale else 1.0, "zero_point": int(zp)}


def model_io(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    it = open_model(path)
    return [io_spec(d) for d in it.get_input_details()], [io_spec(d) for d in it.get_output_details()]


def weight_sparsity(path: str | Path) -> dict[str, float]:
    """Share of zero values in every conv / dense weight tensor of the model, and overall."""
    it = open_model(path)
    td = tensors(it)
    out: dict[str, float] = {}
    zeros = total = 0
    for op in ops(it):
        pos = WEIGHT_OPS.get(op["op"])
        if pos is None or len(op["inputs"]) <= pos or op["inputs"][pos] < 0:
            continue
        try:
            w = it.get_tensor(op["inputs"][pos])
        except ValueError:
            continue
        name = f'{op["op"]}#{op["index"]}:' + td[op["inputs"][pos]]["name"].split(";")[0]
        q = td[op["inputs"][pos]]["quantization_parameters"]
        zp = q["zero_points"]
        zero = (w == (zp.reshape(-1)[0] if zp.size == 1 else 0)) if np.issubdtype(w.dtype, np.integer) else (w == 0)
        out[name] = float(zero.mean())
        zeros += int(zero.sum())
        total += w.size
    out["overall"] = zeros / total if total else 0.0
    return out


def float_ops(path: str | Path) -> list[str]:
    """Ops computing in float (besides I/O QUANTIZE / DEQUANTIZE): a "full-integer" model should have none."""
    it = open_model(path)
    td = tensors(it)
    bad = []
    for op in ops(it):
        if op["op"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(i >= 0 and np.dtype(td[i]["dtype"]).kind == "f" for i in op["inputs"] + op["outputs"]):
            bad.append(f"{op['op']}#{op['index']}")
    return bad
