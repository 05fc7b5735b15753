"""Signed device artefacts: one Ed25519 signature over everything the device reads.

Why: the sidecar's sha256 pins only the model, yet the sidecar's thresholds,
labels and the kNN bank beside it decide what passes the line; whoever can
write those files could pass every part.  ``sign_artefacts`` writes
``model.sig`` beside ``model.tflite``: the sha256 of the model, the sidecar and
the bank (by role, so a renamed copy still verifies), signed with a private key
that stays on the workstation.  ``read_artefacts`` reads each file once, checks
those bytes against a trusted public key and hands the same bytes on (no window
between check and load).  Ed25519 from ``cryptography``; TF-free.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.core.sidecar import Sidecar, parse_sidecar, sidecar_path
from kdefect.errors import ModelIntegrityError
from kdefect.utils.io import atomic_path

log = logging.getLogger(__name__)

SCHEMA = 1
KIND = "kdefect-device-artefacts"
ROLES = ("model", "sidecar", "bank")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # lazy: cryptography loads only to sign or verify
    except ImportError as exc:  # pragma: no cover - an install without the edge/train extra
        raise ModelIntegrityError("signing needs the 'cryptography' package: `pip install 'kdefect[edge]'`.") from exc
    return ed25519


def manifest_path(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.sig`` (the signed manifest)."""
    return Path(model_path).with_suffix(".sig")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes, mode: int) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
    return path


# ---- keys ------------------------------------------------------------------
def key_id(public_key: Any) -> str:
    """First 16 hex digits of the sha256 of the raw public key: names a key in messages and manifests."""
    from cryptography.hazmat.primitives import serialization as ser  # lazy: cryptography loads only to sign or verify

    return _sha(public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw))[:16]


def new_key_pair(out: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``OUT.key`` (private, mode 0600) and ``OUT.pub`` (public, 0644); refuse to replace existing keys."""
    from cryptography.hazmat.primitives import serialization as ser  # lazy: cryptography loads only to sign or verify

    out = Path(out)
    priv_path, pub_path = out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")
    taken = [str(p) for p in (priv_path, pub_path) if p.exists()]
    if taken and not overwrite:
        raise ModelIntegrityError(f"{' and '.join(taken)} already exist(s): pick another name, or move the old key "
                                  "away first (devices that trust it would refuse models signed with a new one).")
    key = _crypto().Ed25519PrivateKey.generate()
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    _write(priv_path, pem, 0o600)
    _write(pub_path, pub, 0o644)
    log.info("key pair %s written: %s (keep private, off the device), %s (copy to the device)",
             key_id(key.public_key()), priv_path, pub_path)
    return priv_path, pub_path


def load_private_key(path: str | Path) -> Any:
    from cryptography.hazmat.primitives import serialization as ser  # lazy: cryptography loads only to sign or verify

    try:
        key = ser.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelIntegrityError(f"cannot read the private key '{path}' ({exc}); make one with "
                                  "`kdefect keys new NAME` and pass NAME.key.") from exc
    if not isinstance(key, _crypto().Ed25519PrivateKey):
        raise ModelIntegrityError(f"'{path}' is not an Ed25519 private key; make one with `kdefect keys new NAME`.")
    return key


def load_public_key(path: str | Path) -> Any:
    from cryptography.hazmat.primitives import serialization as ser  # lazy: cryptography loads only to sign or verify

    try:
        key = ser.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read the public key '{path}' ({exc}); pass the NAME.pub written by "
                                  "`kdefect keys new NAME`.") from exc
    if not isinstance(key, _crypto().Ed25519PublicKey):
        raise ModelIntegrityError(f"'{path}' is not an Ed25519 public key; pass the NAME.pub of `kdefect keys new`.")
    return key


# ---- what the device reads -----------------------------------------------------
def bank_name(sidecar: Sidecar) -> str | None:
    """The kNN bank file a sidecar's OOD gate needs (None without a kNN gate)."""
    gate = sidecar.ood if sidecar.ood is not None else (sidecar.thresholds or {}).get("ood")
    if isinstance(gate, dict) and gate.get("method") == "knn":
        return str(gate.get("bank") or "")
    return None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read the {what} '{path}' ({exc.strerror or exc}); copy it along with "
                                  "the model from the export folder.") from exc


def sign_artefacts(model_path: str | Path, key: Any) -> Path:
    """Sign the model, its sidecar and its bank (``key``: a private key or its PEM file); returns ``model.sig``."""
    key = key if isinstance(key, _crypto().Ed25519PrivateKey) else load_private_key(key)
    model_path = Path(model_path)
    model = _read(model_path, "model")
    side = _read(sidecar_path(model_path), "sidecar")
    sc = parse_sidecar(side, sidecar_path(model_path))
    if sc.sha256 != _sha(model):
        raise ModelIntegrityError(f"'{model_path}' does not match its sidecar's sha256: export again before signing.")
    files = {"model": (model_path.name, model), "sidecar": (sidecar_path(model_path).name, side)}
    bank = bank_name(sc)
    if bank is not None:
        files["bank"] = (bank, _read(model_path.parent / bank, "kNN feature bank"))
    from kdefect import __version__

    payload = json.dumps({
        "schema": SCHEMA, "kind": KIND, "key_id": key_id(key.public_key()), "kdefect_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {role: {"name": name, "sha256": _sha(data)} for role, (name, data) in files.items()},
    }, sort_keys=True, separators=(",", ":"))
    sig = base64.b64encode(key.sign(payload.encode())).decode()
    doc = {"algorithm": "ed25519", "payload": payload, "signature": sig}
    out = _write(manifest_path(model_path), (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
    log.info("signed %s (%s) with key %s -> %s", model_path.name, ", ".join(files), key_id(key.public_key()), out)
    return out


@dataclass(frozen=True)
class Artefacts:
    """The bytes the device runs on, read once and checked: hand these on, never reopen the files."""

    model: bytes
    sidecar: Sidecar
    bank: bytes | None
    manifest_sha256: str | None  # None: not verified against a signing key
    key_id: str | None = None


def _verified_payload(model_path: Path, public_key: Any) -> tuple[dict[str, Any], str]:
    """The manifest's signed payload (and the manifest file's sha256), or a one-line refusal."""
    from cryptography.exceptions import InvalidSignature  # lazy: cryptography loads only to sign or verify

    mp = manifest_path(model_path)
    if not mp.is_file():
        raise ModelIntegrityError(f"'{model_path}' is not signed (no '{mp.name}' beside it) and --trust-key asks "
                                  "for a signature: export with `kdefect tflite --sign KEY` and copy model.sig too.")
    raw = _read(mp, "signed manifest")
    trusted = key_id(public_key)
    try:
        doc = json.loads(raw)
        payload, sig = doc["payload"].encode(), base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelIntegrityError(f"signed manifest '{mp}' is malformed ({type(exc).__name__}); copy it again "
                                  "from the export folder.") from exc
    try:
        public_key.verify(sig, payload)
    except InvalidSignature:
        try:
            claimed = json.loads(payload).get("key_id")
        except (ValueError, AttributeError):
            claimed = None
        if claimed and claimed != trusted:
            raise ModelIntegrityError(f"'{model_path}' is signed by another key ({claimed}), not the trusted key "
                                      f"{trusted}: sign it with the line's key, or trust the right .pub.") from None
        raise ModelIntegrityError(f"the signature of '{mp}' does not verify with the trusted key {trusted}: the "
                                  "manifest was altered. Copy the exported files again.") from None
    return json.loads(payload), _sha(raw)


def _check(role: str, name: str, data: bytes, files: dict[str, Any], model_path: Path) -> None:
    entry = files.get(role)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ModelIntegrityError(f"the signed manifest of '{model_path}' does not cover its {role} '{name}': "
                                  "export and sign again.")
    if _sha(data) != entry["sha256"]:
        raise ModelIntegrityError(f"{role} '{name}' was changed after signing (sha256 does not match the signed "
                                  "manifest): copy the exported files again; never edit them on the device.")


def read_artefacts(model_path: str | Path, trust_key: str | Path | Any | None = None) -> Artefacts:
    """Read model, sidecar and bank once; with ``trust_key`` refuse unsigned, altered or foreign-signed files.

    Without a key the sidecar still pins the model (and the bank), but nothing stops an edit of the
    thresholds or labels: a warning says so.
    """
    model_path = Path(model_path)
    public_key = None
    if trust_key is not None:
        public_key = trust_key if isinstance(trust_key, _crypto().Ed25519PublicKey) else load_public_key(trust_key)
    model = _read(model_path, "model")
    sp = sidecar_path(model_path)
    if not sp.is_file():
        raise ModelIntegrityError(f"no sidecar '{sp}' next to '{model_path}'. Export with `kdefect tflite` (it "
                                  "writes both files) and copy model.json along with the model.")
    side = _read(sp, "sidecar")
    payload: dict[str, Any] = {}
    digest = kid = None
    if public_key is not None:
        payload, digest = _verified_payload(model_path, public_key)
        kid = key_id(public_key)
        files = payload.get("files") if payload.get("kind") == KIND else None
        if not isinstance(files, dict):
            raise ModelIntegrityError(f"'{manifest_path(model_path)}' is not a kdefect artefact manifest.")
        _check("model", model_path.name, model, files, model_path)
        _check("sidecar", sp.name, side, files, model_path)
    sc = parse_sidecar(side, sp)
    if sc.sha256 != _sha(model):
        raise ModelIntegrityError(
            f"'{model_path}' does not match its sidecar (sha256 {_sha(model)[:12]}... != {sc.sha256[:12]}...): "
            "the file was changed or truncated. Copy the model again from the export folder.")
    bank = None
    name = bank_name(sc)
    if name is not None:
        if not name or not (model_path.parent / name).is_file():
            raise ModelIntegrityError(f"the kNN OOD gate of '{model_path}' needs its feature bank '{name}' beside "
                                      "the model: copy it along with model.tflite and model.json (or export again).")
        bank = _read(model_path.parent / name, "kNN feature bank")
        if public_key is not None:
            _check("bank", name, bank, payload["files"], model_path)
    if public_key is None:
        log.warning("%s is not verified against a signing key: its thresholds, labels%s are unprotected (the "
                    "sidecar's sha256 pins only the model). Sign with `kdefect tflite --sign KEY` and run with "
                    "--trust-key KEY.pub.", model_path.name, " and kNN bank" if name else "")
    return Artefacts(model=model, sidecar=sc, bank=bank, manifest_sha256=digest, key_id=kid)
