"""The model card (Markdown): what the model is for, what it was trained on, how good it is.

Why: ISO 9001-style audits ask "which data, which code, which versions, which
results" for a released model.  The data fingerprint is one sha256 over the
split lists and the bytes of every listed image, so any change to the data
(a relabelled or replaced file) changes it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from kdefect.utils.io import read_json, sha256_file

LIBRARIES = ("kdefect", "tensorflow", "tf-keras", "keras-cv", "tensorflow-model-optimization", "numpy", "scipy",
             "ai-edge-litert", "tf-keras-vis", "matplotlib", "pillow")


def data_fingerprint(run_path: str | Path) -> dict[str, Any]:
    """sha256 over (split, relative path, label, file sha256) of every image in the run's split."""
    from kdefect.data.split import load_split

    h = hashlib.sha256()
    counts, missing = {}, []
    for name, (paths, labels) in sorted(load_split(run_path).items()):
        counts[name] = len(paths)
        for p, lab in zip(paths, labels, strict=True):
            h.update(f"{name}\t{Path(p).name}\t{lab}\n".encode())
            if Path(p).is_file():
                h.update(bytes.fromhex(sha256_file(p)))
            else:
                missing.append(p)
    return {"sha256": h.hexdigest(), "counts": counts, "missing_files": len(missing)}


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the kdefect source tree (with '+dirty' for local changes), when it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"


def _verdict_lines(v: dict[str, Any] | None, run_path: Path) -> list[str]:
    """READY / NOT READY with its reasons, and any export made despite a NOT READY verdict."""
    if not v:
        lines = ["**NOT READY**: never calibrated, so no verdict (run `kdefect calibrate`)."]
    else:
        lines = [f"**{v['verdict']}** on the {v['split']} split against trust.targets {v['targets']}"]
        lines += [f"- {r}" for r in v["reasons"]]
    for side in sorted((run_path / "export").glob("*.json")) if (run_path / "export").is_dir() else []:
        try:
            r = read_json(side).get("readiness") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if r.get("exported_unready"):
            lines.append(f"- Exported although {r.get('verdict', 'NOT READY')} (--allow-unready): `{side.name}`")
    return lines


def _data_warnings(run_path: Path) -> list[str]:
    """The data profile's warnings (too few images of a class, boxes too small for the input): an auditor's first
    question about any figure above."""
    try:
        warns = read_json(run_path / "data_profile.json").get("warnings") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [f"- Data: {w}" for w in warns]


def render_model_card(run_path: Path, cfg_text: str, classes: list[str], good: str | None, metrics: dict[str, Any],
                      calibration: dict[str, Any], fingerprint: dict[str, Any]) -> str:
    """Markdown text of the model card."""
    op = calibration.get("operating_point", {})
    tr = calibration.get("test_review", {})
    lines = [
        f"# Model card: {run_path.name}", "",
        "## Intended use",
        f"Automated visual inspection: classify each part image as one of {', '.join(classes)}"
        + (f"; '{good}' is the pass class." if good else "."),
        "Decisions below the review threshold, and parts flagged as out-of-distribution, go to a human inspector."
        " Not for use on other products, cameras, lighting or defect types than those in the training data"
        " without re-validation.", "",
        "## Verdict",
        *_verdict_lines(calibration.get("verdict"), run_path), "",
        "## Data",
        f"- Fingerprint (sha256 over split lists and image bytes): `{fingerprint['sha256']}`",
        f"- Split sizes: {fingerprint['counts']}" + (f" ({fingerprint['missing_files']} listed files missing)"
                                                     if fingerprint["missing_files"] else ""),
        f"- Split lists: `{run_path / 'split'}`", "",
        "## Metrics (test split)",
        f"- Accuracy {_pct(metrics.get('accuracy'))}, macro recall {_pct(metrics.get('macro_recall'))}, "
        f"macro F1 {_pct(metrics.get('macro_f1'))}, n = {metrics.get('n', 'n/a')}",
        f"- Escape rate (argmax) {_pct(metrics.get('escape_rate'))}" if "escape_rate" in metrics else "",
        f"- Calibration: temperature {calibration.get('temperature', 1.0):.3f}, test ECE "
        f"{_pct(calibration.get('test_ece_before'))} -> {_pct(calibration.get('test_ece_after'))}",
        f"- Review: below {calibration.get('review_below', 0):.4f} calibrated confidence; test review share "
        f"{_pct(tr.get('review_share'))}, residual error {_pct(tr.get('residual_error'))} "
        f"(95% upper {_pct(tr.get('residual_error_upper95'))})",
    ]
    if op:
        t = op["test"]
        lines.append(f"- Operating point: pass as '{op['good_label']}' iff P >= {op['good_min_prob']:.4f}; test escape "
                     f"{_pct(t['escape_rate'])} (95% upper {_pct(t['escape_rate_ci95'][1])}), false reject "
                     f"{_pct(t['false_reject_rate'])}")
    lines += ["", "## Provenance",
              f"- git commit: `{git_commit() or 'not a git checkout'}`",
              *[f"- {k}: {v}" for k, v in library_versions().items()], "",
              "## Configuration", "```yaml", cfg_text.rstrip(), "```", "",
              "## Limitations",
              "- Metrics hold for images like the test split; confidence intervals show how much they could vary.",
              "- A rate of 0 observed errors is not a rate of 0: see the Clopper-Pearson upper bounds.",
              "- The OOD score flags unusual images but cannot guarantee that every new defect type is caught.",
              "- Re-validate and re-calibrate after changes in process, material, camera or lighting"
              " (`kdefect monitor` watches for drift).", *_data_warnings(run_path), ""]
    return "\n".join(x for x in lines if x is not None)
