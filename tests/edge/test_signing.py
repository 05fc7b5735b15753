"""Signed device artefacts: the device refuses unsigned, altered or foreign-signed model / sidecar / bank."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from pathlib import Path

import numpy as np
import pytest

from kdefect.core.decision_log import read_log
from kdefect.edge.cli import main
from kdefect.edge.signing import manifest_path, new_key_pair, read_artefacts, sign_artefacts
from kdefect.errors import ModelIntegrityError


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    priv, pub = new_key_pair(d / "line")
    other_priv, other_pub = new_key_pair(d / "other")
    return {"priv": priv, "pub": pub, "other_priv": other_priv, "other_pub": other_pub}


@pytest.fixture()
def signed(model_copy, keys) -> Path:
    sign_artefacts(model_copy, keys["priv"])
    return model_copy


def _edit_sidecar(model: Path, change) -> None:
    sp = model.with_suffix(".json")
    d = json.loads(sp.read_text())
    change(d)
    sp.write_text(json.dumps(d))


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main([*map(str, argv), "-q"])
    return rc, capsys.readouterr().err.strip()


def test_keys_new_writes_private_0600_public_0644_and_never_overwrites(tmp_path):
    priv, pub = new_key_pair(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600 and stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(ModelIntegrityError, match="already exist"):
        new_key_pair(tmp_path / "k")


def test_signed_model_runs_and_every_decision_records_the_manifest_hash(signed, keys, image_folder, tmp_path,
                                                                         capsys):
    log_path = tmp_path / "d.jsonl"
    rc, err = _run(capsys, signed, image_folder, "--trust-key", keys["pub"], "--log", log_path)
    assert rc == 0, err
    want = hashlib.sha256(manifest_path(signed).read_bytes()).hexdigest()
    recs = read_log(log_path)
    assert len(recs) == 10 and all(r["manifest_sha256"] == want for r in recs)


@pytest.mark.parametrize("tamper", [
    "good_min_prob", "review_below", "ood_threshold", "labels", "model_bytes", "swapped_model_rehashed",
    "manifest_payload", "unsigned", "other_key"])
def test_trust_key_refuses_tampered_artefacts_in_one_line(signed, keys, image_folder, edge_model, tmp_path,
                                                          capsys, tamper):
    from kdefect.core.sidecar import read_sidecar, write_sidecar

    if tamper == "good_min_prob":
        _edit_sidecar(signed, lambda d: d["thresholds"].update(decision={"good_label": d["labels"][0],
                                                                         "good_min_prob": 0.0}))
    elif tamper == "review_below":
        _edit_sidecar(signed, lambda d: d["thresholds"].update(review_below=0.0))
    elif tamper == "ood_threshold":
        _edit_sidecar(signed, lambda d: d.update(ood={"method": "msp", "threshold": 1.0}))
    elif tamper == "labels":
        _edit_sidecar(signed, lambda d: d.update(labels=d["labels"][::-1]))
    elif tamper == "model_bytes":
        data = bytearray(signed.read_bytes())
        data[len(data) // 2] ^= 0xFF
        signed.write_bytes(bytes(data))
        _edit_sidecar(signed, lambda d: d.update(sha256=hashlib.sha256(data).hexdigest()))
    elif tamper == "swapped_model_rehashed":  # another model, its sidecar re-hashed to match
        from .conftest import build_tflite

        other = build_tflite(tmp_path / "o" / "model.tflite", (48, 48), ["a", "b", "c", "d", "e"], seed=3, epochs=0)
        signed.write_bytes(other.read_bytes())
        write_sidecar(signed, read_sidecar(signed, verify=False))
    elif tamper == "manifest_payload":
        mp = manifest_path(signed)
        doc = json.loads(mp.read_text())
        payload = json.loads(doc["payload"])
        payload["files"]["sidecar"]["sha256"] = "0" * 64
        doc["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        mp.write_text(json.dumps(doc))
    elif tamper == "unsigned":
        manifest_path(signed).unlink()
    elif tamper == "other_key":
        sign_artefacts(signed, keys["other_priv"])
    rc, err = _run(capsys, signed, image_folder, "--trust-key", keys["pub"], "--log", tmp_path / "d.jsonl")
    assert rc == 2
    assert err.startswith("kdefect-edge: error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "d.jsonl").exists()  # refused before the first decision


def test_without_a_key_it_runs_as_before_but_warns_that_thresholds_are_unprotected(model_copy, caplog):
    from kdefect.edge.classifier import EdgeClassifier

    with caplog.at_level(logging.WARNING, logger="kdefect.edge.signing"):
        clf = EdgeClassifier(model_copy)
    assert clf.manifest_sha256 is None
    assert any("unprotected" in r.getMessage() for r in caplog.records)


def test_the_interpreter_runs_the_checked_bytes_not_a_reopened_path(signed, keys, monkeypatch):
    from kdefect.edge import interpreter
    from kdefect.edge.classifier import EdgeClassifier

    mod, name = interpreter._modules()
    seen = []

    class Spy:
        def __getattr__(self, item):
            return getattr(mod, item)

        def Interpreter(self, **kw):
            seen.append(kw)
            return mod.Interpreter(**kw)

    monkeypatch.setattr(interpreter, "_modules", lambda: (Spy(), name))
    EdgeClassifier(signed, trust_key=keys["pub"])
    assert len(seen) == 1 and "model_path" not in seen[0]
    assert seen[0]["model_content"] == signed.read_bytes()


def _knn_artefacts(model: Path, rng_seed: int = 0) -> Path:
    """Give ``model``'s sidecar a kNN gate with a bank beside it (library level: no feature output needed)."""
    from kdefect.core.knn import KNN, save_bank

    bank = model.with_suffix(".knn.npy")
    sha = save_bank(bank, KNN.fit(np.random.default_rng(rng_seed).normal(size=(20, 8)), k=3))
    _edit_sidecar(model, lambda d: d["thresholds"].update(
        ood={"method": "knn", "k": 3, "threshold": 0.5, "bank": bank.name, "bank_sha256": sha}))
    return bank


def test_signature_covers_the_knn_bank(model_copy, keys):
    bank = _knn_artefacts(model_copy)
    sign_artefacts(model_copy, keys["priv"])
    art = read_artefacts(model_copy, keys["pub"])
    assert art.bank == bank.read_bytes()
    payload = json.loads(json.loads(manifest_path(model_copy).read_text())["payload"])
    assert set(payload["files"]) == {"model", "sidecar", "bank"}
    other = model_copy.parent / "other.npy"
    from kdefect.core.knn import KNN, save_bank

    save_bank(other, KNN.fit(np.random.default_rng(5).normal(size=(20, 8)), k=3))
    bank.write_bytes(other.read_bytes())  # a replaced bank
    with pytest.raises(ModelIntegrityError, match="bank"):
        read_artefacts(model_copy, keys["pub"])


def test_bank_hash_is_mandatory_even_without_a_signature(model_copy):
    from kdefect.core.decisions import rule_from_sidecar
    from kdefect.core.sidecar import read_sidecar

    _knn_artefacts(model_copy)
    _edit_sidecar(model_copy, lambda d: d["thresholds"]["ood"].pop("bank_sha256"))
    with pytest.raises(ModelIntegrityError, match="bank_sha256"):
        rule_from_sidecar(read_sidecar(model_copy), model_path=model_copy)


@pytest.mark.parametrize("content", [
    b"{not json", b'{"sha256": "SHA", "task": "classify", "labels": ["a"]}',
    b'{"sha256": "SHA", "task": "classify", "labels": "ab", "input": {"size": [48, 48]}}',
    b'{"sha256": "SHA", "task": "classify", "labels": ["a"], "input": {"size": "48x48"}}',
    b'{"sha256": "SHA", "task": "classify", "labels": ["a", "b", "c", "d", "e"], "input": {"size": [48, 48]}, '
    b'"thresholds": {"review_below": "high"}}',
    b'\xff\xfe binary'])
def test_malformed_sidecar_is_one_line_and_exit_2(model_copy, image_folder, tmp_path, capsys, content):
    sha = hashlib.sha256(model_copy.read_bytes()).hexdigest().encode()
    model_copy.with_suffix(".json").write_bytes(content.replace(b"SHA", sha))  # only the content is wrong
    rc, err = _run(capsys, model_copy, image_folder, "--log", tmp_path / "d.jsonl")
    assert rc == 2 and "model.json' is malformed" in err and len(err.splitlines()) == 1
