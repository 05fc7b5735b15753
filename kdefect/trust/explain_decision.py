"""``kdefect explain --decision decisions.jsonl --index N``: why did *this* device reject *this* part?

The logged image goes again through the logged model, after checking that
the model file is byte-for-byte the one that decided (its sha256 against the
log line's ``model_sha256``); the class the device logged is explained and
one self-contained page is written (PNG + HTML): the image, one overlay per
method, the probabilities, the decision and the thresholds that made it.
"""

from __future__ import annotations

import html
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import DataError, ModelError, ModelIntegrityError
from kdefect.trust.model_fn import TFLiteProbs
from kdefect.trust.saliency import AGNOSTIC, ExplainSettings, Saliency, display, explain_one
from kdefect.utils.io import write_bytes, write_text

log = logging.getLogger(__name__)


def logged_record(log_path: str | Path, index: int) -> dict[str, Any]:
    """Line ``index`` of a decision log (negative counts from the end); refuses error records."""
    from kdefect.core.decision_log import read_log

    recs = read_log(log_path)
    if not -len(recs) <= index < len(recs):
        raise DataError(f"--index {index} is outside the decision log '{log_path}' ({len(recs)} records).")
    rec = recs[index]
    if rec.get("label") is None:
        raise DataError(f"record {index} of '{log_path}' is an error record ({rec.get('error')}); nothing was decided.")
    return rec


def _image_file(rec: dict[str, Any]) -> Path:
    for key in ("source", "review_path"):
        if rec.get(key) and Path(rec[key]).is_file():
            return Path(rec[key])
    raise DataError(f"the logged image '{rec.get('source')}' is not on this machine (camera frames are kept only "
                    "when filed for review): copy the image here or pass the review copy.")


def find_model(log_path: str | Path, sha256: str | None) -> Path | None:
    """A ``.tflite`` beside the log (or one folder up) whose sidecar records the logged hash; verified when loaded."""
    from kdefect.utils.io import read_json

    here = Path(log_path).resolve().parent
    for cand in sorted([*here.glob("*.tflite"), *here.parent.glob("*.tflite")]):
        side = cand.with_suffix(".json")
        if sha256 and side.is_file() and read_json(side).get("sha256") == sha256:
            return cand
    return None


def rerun_decision(log_path: str | Path, index: int, model_path: str | Path | None = None,
                   threads: int = 1, batch: int = 1) -> tuple[dict[str, Any], TFLiteProbs, np.ndarray, Any]:
    """(record, model function, prepared image, fresh Decision) for a logged line; refuses a model of another hash."""
    rec = logged_record(log_path, index)
    path = model_path or rec.get("model") or find_model(log_path, rec.get("model_sha256"))
    if not path:
        raise ModelError("no model with the logged sha256 beside the decision log: pass the .tflite that ran on the "
                         "line (kdefect explain MODEL.tflite --decision LOG --index N).")
    fn = TFLiteProbs(path, threads=threads, batch=batch)
    logged = rec.get("model_sha256")
    if logged != fn.sha256:
        raise ModelIntegrityError(
            f"'{path}' (sha256 {fn.sha256[:12]}...) is not the model that made this decision (logged "
            f"{str(logged)[:12]}...): find the model file with that hash (export folder or device backup).")
    x = fn.load(_image_file(rec))
    decision = fn.clf.decide(x)
    if decision.label != rec["label"]:
        log.warning("the re-run decides %s but the log says %s: the image file changed since it was logged.",
                    decision.label, rec["label"])
    return rec, fn, x, decision


def _page_png(image: np.ndarray, maps: list[Saliency], probs: dict[str, float], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kdefect.trust.explain import overlay

    img = np.clip(image, 0, 255).astype(np.uint8)
    n = 2 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0))
    axes[0].imshow(img.squeeze(), cmap="gray")
    axes[0].set_title("image", fontsize=9)
    for ax, s in zip(axes[1:-1], maps, strict=True):
        ax.imshow(overlay(img, display(s.heat)))
        ax.set_title(f"{s.method} ({s.seconds:.1f} s)", fontsize=9)
    for ax in axes[:-1]:
        ax.axis("off")
    names = list(probs)
    axes[-1].barh(names, [probs[k] for k in names], color="#4a7")
    axes[-1].set_xlim(0, 1)
    axes[-1].set_title("probabilities", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def explain_decision(log_path: str | Path, index: int, out_dir: str | Path, model_path: str | Path | None = None,
                     methods: list[str] | None = None, settings: ExplainSettings | None = None,
                     threads: int = 1) -> dict[str, Path]:
    """Write ``decision_<index>.png`` and ``.html`` for one logged part; return both paths."""
    from kdefect.trust.html_parts import img as _img
    from kdefect.trust.html_parts import table as _table

    methods = list(methods or ("lime", "shap", "occlusion"))
    if bad := [m for m in methods if m not in AGNOSTIC]:
        raise ModelError(f"{bad}: a logged decision is explained on the .tflite; use lime, shap or occlusion.")
    settings = settings or ExplainSettings()
    rec, fn, x, d = rerun_decision(log_path, index, model_path, threads, settings.batch)
    cls = list(fn.labels).index(rec["label"])
    maps = [explain_one(m, fn, x, cls, settings) for m in methods]
    r = fn.rule
    title = (f"{Path(rec['source']).name}: {rec['label']} ({rec['score']:.3f})"
             + (f", verdict {rec['verdict']}" if rec.get("verdict") else "") + (", REVIEW" if rec.get("review") else ""))
    png = _page_png(x, maps, d.probs, title)
    thresholds = [["temperature", r.temperature], ["review below (confidence)", r.review_below],
                  ["good label", r.good_label or "n/a"], ["pass if P(good) >=", r.good_min_prob or "argmax"],
                  ["OOD gate", f"{r.ood['method']} > {r.ood['threshold']}" if r.ood else "off"]]
    logged = [["time", rec.get("time")], ["source", rec.get("source")], ["label", rec["label"]],
              ["score", rec["score"]], ["review", rec.get("review")], ["verdict", rec.get("verdict")],
              ["OOD", rec.get("ood")], ["model sha256 (matches)", fn.sha256], ["re-run label", d.label]]
    cost = [[s.method, round(s.seconds, 2), s.model_images] for s in maps]
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
           f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'><h1>{html.escape(title)}</h1>"
           f"{_img(png, 'image, overlays and probabilities')}<h2>Decision (log line {index})</h2>"
           f"{_table(['item', 'value'], logged)}<h2>Probabilities (re-run)</h2>"
           f"{_table(['class', 'probability'], [[k, v] for k, v in d.probs.items()])}"
           f"<h2>Thresholds (from the model's sidecar)</h2>{_table(['threshold', 'value'], thresholds)}"
           f"<h2>Explanations of class '{html.escape(rec['label'])}'</h2><p>Red = regions that raised the "
           f"probability of the logged class. Settings: {html.escape(str(settings.to_dict()))}.</p>"
           f"{_table(['method', 'seconds', 'model calls (images)'], cost)}</body></html>\n")
    out = Path(out_dir)
    paths = {"png": write_bytes(out / f"decision_{index}.png", png), "html": write_text(out / f"decision_{index}.html", doc)}
    log.info("decision %d explained -> %s", index, paths["html"])
    return paths
