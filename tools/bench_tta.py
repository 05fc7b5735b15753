"""Would test-time augmentation pay? The same trained runs scored on one view, and averaged over flipped views.

Why: on ELPV the false-reject rate at the operating point (issue 10) is the figure furthest from its target, and
it depends only on how well the model ranks good parts above defective ones. Averaging a model's probabilities
over flipped copies of each image is a known way to rank better without training again. Every arm scores the
*same* weights on the *same* images, so the comparison has no training noise; it measures whether the device
should run more than one view before kdefect builds it (it would cost that many inferences per part).

Views: ``one`` (the image as trained), ``flips`` (left-right, up-down and both: 4 views), ``dihedral`` (the
flips and their quarter turns: 8 views, square inputs only). Each arm averages softmax outputs, chooses the
P(good) threshold on validation for each escape target (``kdefect.trust.operating_point``, as ``fit`` does),
and reports it on the test split.

With ``--ensemble`` the runs' probabilities are also averaged across runs, view arm by view arm: a deep ensemble
(Lakshminarayanan et al. 2017) of runs trained on one split with different seeds (``--set seed=N --set
data.split_from=FIRST_RUN``). It would cost one model per member on the device; it is scored before it is built.

    python tools/bench_tta.py RUN [RUN...] --label NAME --targets 0.01 0.05 [--ensemble] -> tools/results/tta.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, md_table, merge_results, section_lines, write_md

OUT = RESULTS / "tta.json"
VIEWS = {"one": 1, "flips": 4, "dihedral": 8}


def views(x: np.ndarray, n: int) -> list[np.ndarray]:
    """The first ``n`` of: identity, left-right, up-down, both; then each of those turned a quarter."""
    base = [x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1]]
    return (base + [np.rot90(v, 1, axes=(1, 2)) for v in base])[:n]


def mean_probs(model: Any, x: np.ndarray, n: int) -> np.ndarray:
    return np.mean([model.predict(v.astype(np.float32), batch_size=64, verbose=0) for v in views(x, n)], axis=0)


def auroc_good(p_good: np.ndarray, y: np.ndarray, good: int) -> float:
    """P(a good part scores a higher P(good) than a defective one): the ranking every threshold lives on."""
    from kdefect.trust.ood import auroc

    return auroc(p_good[y != good], p_good[y == good])


def score_run(run_path: Path, targets: list[float], arms: list[str]
              ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Rows per view arm, and each arm's val/test probabilities (for ``--ensemble``)."""
    from kdefect.core.run import RunDir
    from kdefect.tasks.heads import load_model
    from kdefect.tasks.outputs import split_images

    run = RunDir.open(run_path)
    classes, _ = run.classes()
    good = classes.index(run.config().data.good_label)
    model = load_model(run.model_path)
    (pathv, yv, xv), (patht, yt, xt) = split_images(run, "val"), split_images(run, "test")
    square = xv.shape[1] == xv.shape[2]
    groups = elpv_groups(patht)  # labels.csv read once per run
    rows, probs = [], {}
    for arm in arms:
        if arm == "dihedral" and not square:
            continue
        pv, pt = mean_probs(model, xv, VIEWS[arm]), mean_probs(model, xt, VIEWS[arm])
        probs[arm] = {"pv": pv, "pt": pt, "yv": yv, "yt": yt, "paths": (pathv, patht), "classes": classes,
                      "good": good, "elpv": groups}
        rows.append(score_row(run_path.name, arm, probs[arm], targets))
    return rows, probs


def score_row(name: str, arm: str, p: dict[str, Any], targets: list[float]) -> dict[str, Any]:
    """Accuracy, macro recall, AUROC and the operating point chosen on val for each escape target, on test."""
    from kdefect.engine.metrics import classification_metrics
    from kdefect.trust.operating_point import choose_threshold, evaluate_threshold

    good, yt = p["good"], p["yt"]
    m = classification_metrics(yt, p["pt"], p["classes"], good_label=p["classes"][good])
    row = {"run": name, "views": arm, "n_views": VIEWS[arm], "test_n": len(yt),
           "accuracy": m["accuracy"], "macro_recall": m["macro_recall"],
           "auroc_good": auroc_good(p["pt"][:, good], yt, good)}
    for name_, (keep, defective) in (p.get("elpv") or {}).items():  # ELPV: where the ranking fails
        row[f"auroc_{name_}"] = auroc_good(p["pt"][keep, good], np.where(defective[keep], 1 - good, good), good)
    for t in targets:
        op = evaluate_threshold(p["pt"], yt, good, choose_threshold(p["pv"][:, good], p["yv"], good, t))
        row[f"frr@{t:g}"] = op["false_reject_rate"]
        row[f"escapes@{t:g}"] = f"{op['escapes']}/{op['defective']}"
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def elpv_groups(paths: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """For an ELPV run: (mask, defective) of the certain cells (p 0 against p 1) and of each cell type (p >= 0.5
    defective). Is a poor AUROC the uncertain labels (p 1/3, 2/3) or the images? None for any other data."""
    if not paths or "/elpv/" not in paths[0].replace("\\", "/"):
        return None
    from kdefect.data.elpv import elpv_labels

    files, probs, types, _ = elpv_labels()
    by_stem = {f.stem: (float(pr), t) for f, pr, t in zip(files, probs, types)}
    pr, ty = np.array([by_stem[Path(q).stem][0] for q in paths]), np.array([by_stem[Path(q).stem][1] for q in paths])
    return {"certain": ((pr == 0) | (pr == 1), pr >= 0.5), "mono": (ty == "mono", pr >= 0.5),
            "poly": (ty == "poly", pr >= 0.5)}


def ensemble_rows(scored: list[dict[str, dict[str, Any]]], targets: list[float]) -> list[dict[str, Any]]:
    """The runs' probabilities averaged per view arm: a deep ensemble (runs that differ only in their seed)."""
    rows = []
    for arm in scored[0]:
        members = [s[arm] for s in scored if arm in s]
        if any(m["paths"] != members[0]["paths"] for m in members):
            raise SystemExit("--ensemble needs runs on the same split (train them with data.split_from=FIRST_RUN)")
        avg = {**members[0], "pv": np.mean([m["pv"] for m in members], 0),
               "pt": np.mean([m["pt"] for m in members], 0)}
        rows.append(score_row(f"ensemble of {len(members)}", arm, avg, targets))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="classification run folders with a good class")
    ap.add_argument("--label", required=True, help="results section name")
    ap.add_argument("--targets", nargs="+", type=float, default=[0.01, 0.05], help="escape targets")
    ap.add_argument("--arms", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    ap.add_argument("--ensemble", action="store_true",
                    help="also score the runs' mean probabilities (runs on one split that differ in their seed)")
    args = ap.parse_args()
    scored = [score_run(p, args.targets, args.arms) for p in args.runs]
    rows = [r for run_rows, _ in scored for r in run_rows]
    if args.ensemble:
        rows += ensemble_rows([probs for _, probs in scored], args.targets)
    data = merge_results(OUT, args.label, {"targets": args.targets, "rows": rows})
    lines = ["# Averaged predictions: one view against flipped views (TTA), one run against an ensemble of runs", "",
             "Each run is scored as trained (`one`), and on the mean softmax over 4 flips (`flips`) or 8 flips and "
             "quarter turns (`dihedral`). `frr@T` / `escapes@T`: test false-reject rate and escapes at the P(good) "
             "threshold chosen on validation for escape target T. `auroc_good`: how well P(good) ranks good parts "
             "above defective ones on test. `ensemble of N` rows average the softmax of N runs that differ only in "
             "their seed (same split), view arm by view arm.", ""]
    for name, sec in data.items():
        extra = [c for c in ("auroc_certain", "auroc_mono", "auroc_poly") if any(c in r for r in sec["rows"])]
        cols = ["run", "views", "accuracy", "macro_recall", "auroc_good", *extra,
                *[f"{k}@{t:g}" for t in sec["targets"] for k in ("frr", "escapes")]]
        lines += [*section_lines(name, sec, f"Machine: {sec['machine']['cpu']}, {sec['machine']['cpu_count']} cores"),
                  "", md_table(sec["rows"], cols)]
    write_md(RESULTS / "tta.md", "\n".join(lines))


if __name__ == "__main__":
    main()
