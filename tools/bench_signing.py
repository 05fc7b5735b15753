"""Signed-artefact round trip (committed results: tools/results/signing.{json,md}).

  python tools/bench_signing.py [--out signing]

Builds a tiny run (synthetic 32 px images, a few epochs), then with the real commands:
``kdefect keys new`` -> ``kdefect tflite RUN --ood-gate knn --sign KEY`` -> ``kdefect-edge --trust-key PUB``
on the untouched export, then on a fresh copy tampered one way at a time (model, sidecar thresholds, labels,
bank, a swapped model with a re-hashed sidecar, a deleted bank hash, another key, no signature, an edited
manifest).  Each case runs with and without ``--trust-key``; with the key every tamper must exit 2 with one
line.  Also: a swapped ``model.keras`` in the run, and a ``.h5`` with a Lambda layer, must not export.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _bench import RESULTS, header, md_table, write_md  # noqa: E402

from kdefect.utils.io import write_json  # noqa: E402

CLASSES = ["good", "dark", "red"]
SIZE = 32
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cmd(*args: object, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=False)


def _edge(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from kdefect.edge.cli import main; sys.exit(main())",
                           *map(str, args), "-q"], capture_output=True, text=True, env=ENV, timeout=300, check=False)


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = {"good": (128, 128, 128), "dark": (40, 40, 40), "red": (220, 60, 60)}
    xs = [np.clip(np.array(base[c], np.float32) + rng.normal(0, 18, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
          for c in CLASSES]
    return np.concatenate(xs), np.repeat(np.arange(len(CLASSES)), n)


def build_run(root: Path) -> Path:
    """A calibrated (READY) run folder in the RunDir layout, with its training manifest."""
    from PIL import Image

    from kdefect.config import Config
    from kdefect.core.run import RunDir
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier
    from kdefect.utils.io import write_text

    keras.utils.set_random_seed(0)
    run = RunDir.create(root / "runs", "tiny")
    cfg = Config()
    cfg.data.image_size = [SIZE, SIZE]
    cfg.save(run.config_path)
    run.save_classes(CLASSES, "good")
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        x, y = _images(20 if split == "train" else 10, seed)
        lines = []
        for i, (img, lab) in enumerate(zip(x, y)):
            p = root / "images" / split / CLASSES[lab] / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(p)
            lines.append(f"{p}\t{CLASSES[lab]}")
        write_text(run.path / "split" / f"{split}.txt", "\n".join(lines) + "\n")
    model = build_classifier(len(CLASSES), "tiny_cnn", input_size=(SIZE, SIZE), dropout=0.0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(*(lambda x, y: (x.astype(np.float32), y))(*_images(20, 1)), epochs=8, batch_size=16, verbose=0)
    model.save(run.model_path)
    write_json(run.path / "calibration.json", {
        "temperature": 1.0, "review_below": 0.6, "decision": {"good_label": "good", "good_min_prob": 0.7},
        "device_ood": {"method": "msp", "threshold": 0.45}, "verdict": {"verdict": "READY", "reasons": []}})
    run.write_manifest()
    return run.path


def _sidecar(model: Path, change: Callable[[dict], None]) -> None:
    sp = model.with_suffix(".json")
    d = json.loads(sp.read_text())
    change(d)
    sp.write_text(json.dumps(d, indent=2))


def tampers(other_export: Path, other_key: Path) -> dict[str, Callable[[Path], None]]:
    """name -> edit of a device copy (``model`` is the copy's model.tflite)."""
    from kdefect.edge.signing import sign_artefacts

    def model_bytes(m: Path) -> None:
        data = bytearray(m.read_bytes())
        data[len(data) // 2] ^= 0xFF
        m.write_bytes(bytes(data))

    def bank_replaced(m: Path) -> None:
        bank = m.with_suffix(".knn.npy")
        np.save(bank, np.load(bank)[::-1].copy())

    def swapped_model(m: Path) -> None:
        m.write_bytes(other_export.read_bytes())
        _sidecar(m, lambda d: d.update(sha256=hashlib.sha256(m.read_bytes()).hexdigest()))

    def bank_hash_deleted(m: Path) -> None:
        bank_replaced(m)
        _sidecar(m, lambda d: d["thresholds"]["ood"].pop("bank_sha256"))

    def manifest_edited(m: Path) -> None:
        sig = m.with_suffix(".sig")
        doc = json.loads(sig.read_text())
        payload = json.loads(doc["payload"])
        payload["files"]["sidecar"]["sha256"] = hashlib.sha256(m.with_suffix(".json").read_bytes()).hexdigest()
        doc["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        sig.write_text(json.dumps(doc))

    return {
        "model bytes changed": model_bytes,
        "sidecar good_min_prob -> 0": lambda m: _sidecar(m, lambda d: d["thresholds"]["decision"].update(
            good_min_prob=0.0)),
        "sidecar review_below -> 0": lambda m: _sidecar(m, lambda d: d["thresholds"].update(review_below=0.0)),
        "sidecar OOD threshold -> 1e9": lambda m: _sidecar(m, lambda d: d["thresholds"]["ood"].update(
            threshold=1e9)),
        "labels swapped": lambda m: _sidecar(m, lambda d: d.update(labels=d["labels"][::-1])),
        "kNN bank replaced": bank_replaced,
        "other model + re-hashed sidecar": swapped_model,
        "bank replaced + bank_sha256 deleted": bank_hash_deleted,
        "signed by another key": lambda m: sign_artefacts(m, other_key),
        "signature deleted": lambda m: m.with_suffix(".sig").unlink(),
        "manifest edited (sidecar hash)": lambda m: (_sidecar(m, lambda d: d["thresholds"].update(
            review_below=0.0)), manifest_edited(m)),
    }


def _one_line(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.strip().splitlines() if "error:" in ln]
    return lines[-1][:200] if lines else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="signing")
    args = ap.parse_args()
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="kdefect-sign-"))
    try:
        run = build_run(work)
        keys = work / "keys"
        for name in ("line", "other"):
            p = _cmd("kdefect", "keys", "new", keys / name)
            assert p.returncode == 0, p.stderr
        export = work / "export" / "model.tflite"
        p = _cmd("kdefect", "-q", "tflite", run, "--ood-gate", "knn", "--calib-size", "30", "--out", export,
                 "--sign", keys / "line.key")
        assert p.returncode == 0, p.stderr
        other = work / "other" / "model.tflite"
        p = _cmd("kdefect", "-q", "tflite", run, "--float32", "--out", other)
        assert p.returncode == 0, p.stderr
        images = work / "images" / "test"
        rows = []

        def case(name: str, edit: Callable[[Path], None] | None) -> None:
            dev = work / "device" / str(len(rows))
            shutil.copytree(export.parent, dev)
            model = dev / "model.tflite"
            if edit is not None:
                edit(model)
            signed = _edge(model, images, "-r", "--trust-key", keys / "line.pub", "--log", dev / "signed.jsonl")
            plain = _edge(model, images, "-r", "--log", dev / "plain.jsonl")
            logged = [json.loads(ln) for ln in (dev / "signed.jsonl").read_text().splitlines()] \
                if (dev / "signed.jsonl").is_file() else []
            rows.append({"case": name, "rc_trust_key": signed.returncode, "decisions_trust_key": len(logged),
                         "manifest_sha256_logged": bool(logged) and all(r.get("manifest_sha256") for r in logged),
                         "stderr_lines": len(signed.stderr.strip().splitlines()), "error": _one_line(signed),
                         "rc_no_key": plain.returncode,
                         "refused": signed.returncode == 2 and not logged})

        case("untouched export", None)
        for name, edit in tampers(other, keys / "other.key").items():
            case(name, edit)
        # the export side: a swapped model.keras, and a .h5 with a Lambda layer
        from kdefect.keras import keras

        shutil.copy(run / "model.keras", work / "orig.keras")
        keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(3, activation="softmax")]).save(run / "model.keras")
        p = _cmd("kdefect", "-q", "tflite", run, "--float32", "--out", work / "swapped.tflite")
        rows.append({"case": "export: swapped model.keras in the run", "rc_export": p.returncode,
                     "error": _one_line(p), "refused": p.returncode == 2})
        marker = work / "marker"
        fn = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")
        inp = keras.Input((SIZE, SIZE, 3))
        out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(fn)(inp)))
        keras.Model(inp, out).save(work / "lambda.h5", save_format="h5")
        marker.unlink(missing_ok=True)
        p = _cmd("kdefect", "-q", "tflite", "--model", work / "lambda.h5", "--float32", "--out", work / "l.tflite")
        rows.append({"case": "export: .h5 with a Lambda layer", "rc_export": p.returncode, "error": _one_line(p),
                     "code_ran": marker.exists(), "refused": p.returncode == 2 and not marker.exists()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = rows[0]["rc_trust_key"] == 0 and rows[0]["manifest_sha256_logged"] and all(r["refused"] for r in rows[1:])
    result = {**header(), "wall_s": round(time.time() - t0, 1), "all_refused_and_untouched_accepted": ok,
              "cases": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{args.out}.json", result)
    m = result["machine"]
    md = (f"# Signed-artefact round trip\n\n`{result['command']}`  \n{result['date']}, {m['machine']}, "
          f"{m['cpu_count']} cores ({m['cpu']}); {result['wall_s']} s.\n\n"
          "A tiny run exported with `kdefect tflite RUN --ood-gate knn --sign line.key`; each row a fresh copy of "
          "the export, tampered one way, run with `kdefect-edge --trust-key line.pub` (rc 2 and no decision = "
          "refused) and without a key (today's behaviour: rc 0 = accepted, with the unprotected-thresholds "
          f"warning).\n\n**Untouched accepted and every tamper refused: {ok}.**\n\n"
          + md_table(rows, ["case", "rc_trust_key", "decisions_trust_key", "manifest_sha256_logged", "rc_no_key",
                            "rc_export", "refused", "error"]))
    write_md(RESULTS / f"{args.out}.md", md)
    print(md)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
