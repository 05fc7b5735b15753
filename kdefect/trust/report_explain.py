"""The report's "Explanations" section: what the exported model looked at, and how faithful that map is.

For each class: the most confident correct test part and the most confident
wrong one, explained with LIME on the exported ``.tflite`` when the run has
one (the model the line runs), else on the float model (and the section
says so).  Below them, the deletion / insertion AUC of those maps on the
same model against a random pixel order (``faithfulness``), so an auditor
sees how far the overlays can be trusted for this very run.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np

from kdefect.errors import ModelError
from kdefect.trust import faithfulness as F
from kdefect.trust.saliency import ExplainSettings, display, explain_one

log = logging.getLogger(__name__)


def pick_parts(y: np.ndarray, probs: np.ndarray) -> list[tuple[int, str]]:
    """(test index, 'correct'|'wrong') per class: the most confident of each kind, when there is one."""
    pred, conf = probs.argmax(1), probs.max(1)
    out = []
    for c in np.unique(y):
        for kind, ok in (("correct", pred == c), ("wrong", pred != c)):
            idx = np.nonzero((y == c) & ok)[0]
            if len(idx):
                out.append((int(idx[np.argmax(conf[idx])]), kind))
    return out


def explanations_section(run: Any, images: np.ndarray, y: np.ndarray, classes: list[str], keras_model: Any,
                         method: str = "lime", settings: ExplainSettings | None = None) -> str:
    """HTML for the section (explanations of the chosen parts + the faithfulness table of this run)."""
    from kdefect.trust.explain import overlay, png_bytes
    from kdefect.trust.html_parts import img as _img
    from kdefect.trust.html_parts import table as _table
    from kdefect.trust.model_fn import KerasProbs, TFLiteProbs, exported_tflite

    settings = settings or ExplainSettings()
    tfl = exported_tflite(run.path)
    if tfl is not None:
        fn: Any = TFLiteProbs(tfl)
        note = f"on the exported <code>{html.escape(str(tfl.relative_to(run.path)))}</code> (the device model)"
    else:
        fn = KerasProbs(keras_model, classes)
        note = "on the float Keras model: this run has no export yet, so the device model is not what is shown"
    x = images.astype(np.float32)
    try:
        probs = fn(x)
        cells, faith = [], {"method": [], "random": [], "ins": [], "ins_random": []}
        for i, kind in pick_parts(y, probs):
            cls = int(probs[i].argmax())
            s = explain_one(method, fn, x[i], cls, settings)
            for key, heat in (("method", s.heat), ("random", F.random_heat(x[i].shape, settings.seed + i))):
                c = F.causal_curves(fn, x[i], cls, heat, steps=16, seed=settings.seed + i)
                faith[key].append(c["deletion_auc"])
                faith["ins" if key == "method" else "ins_random"].append(c["insertion_auc"])
            cells.append(f'<div class="g">{_img(png_bytes(images[i]), "image")}'
                         f'{_img(png_bytes(overlay(images[i], display(s.heat))), method)}<br>'
                         f'<b class="{"bad" if kind == "wrong" else ""}">{kind}</b> true {html.escape(classes[y[i]])}, '
                         f"pred {html.escape(classes[cls])} ({probs[i, cls]:.3f}), {s.seconds:.1f} s</div>")
    except ModelError as exc:  # e.g. lime not installed: the rest of the report still matters
        return f"<p>No explanations: {html.escape(str(exc))}</p>"
    if not cells:
        return "<p>No test images to explain.</p>"
    beat = float(np.mean(np.less(faith["method"], faith["random"])))
    rows = [[f"{method} deletion AUC (lower = more faithful)", _ms(faith["method"]), _ms(faith["random"])],
            [f"{method} insertion AUC (higher = more faithful)", _ms(faith["ins"]), _ms(faith["ins_random"])],
            ["parts where the map beats the random order (deletion)", f"{100 * beat:.0f}%", ""]]
    return (f"<p>{method.upper()} {note}; red = regions that raised the probability of the predicted class. "
            "For each class the most confident correct and the most confident wrong test part. Settings: "
            f"{html.escape(str(settings.to_dict()))}.</p>{''.join(cells)}"
            f"<h3>Faithfulness of these maps (RISE deletion / insertion, same model)</h3>"
            f"{_table(['metric', method, 'random order'], rows)}"
            "<p>Which method to trust for which question: docs/trust.md, measured in tools/results/explain.md.</p>")


def _ms(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v):.3f} (n = {len(v)})"
