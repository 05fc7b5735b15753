"""Decision rule and decision log: calibrated scores, review flags, OOD, durable JSONL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdefect.core.decision_log import DecisionLog, read_log
from kdefect.core.decisions import DecisionRule, rule_from_sidecar
from kdefect.core.sidecar import InputSpec, Sidecar
from kdefect.errors import EdgeError

LABELS = ("good", "scratch", "spot")


def test_plain_probs_are_kept_and_review_flag_uses_threshold():
    d = DecisionRule(LABELS, review_below=0.6)(np.array([0.2, 0.5, 0.3]))
    assert (d.label, d.score, d.review) == ("scratch", 0.5, True)
    assert d.probs == {"good": 0.2, "scratch": 0.5, "spot": 0.3}
    assert DecisionRule(LABELS, review_below=0.4)(np.array([0.2, 0.5, 0.3])).review is False


def test_temperature_softens_scores_but_keeps_the_label():
    p = np.array([0.05, 0.9, 0.05])
    hot = DecisionRule(LABELS, temperature=2.0)(p)
    assert hot.label == "scratch"
    expected = np.sqrt(p) / np.sqrt(p).sum()  # softmax(log p / 2)
    assert hot.score == pytest.approx(expected[1], abs=1e-6)
    z = np.array([1.0, 3.0, 0.0])
    d = DecisionRule(LABELS, temperature=1.5, output_kind="logits")(z)
    e = np.exp(z / 1.5)
    assert d.score == pytest.approx(e[1] / e.sum(), abs=1e-6)


def test_ood_scores_and_validation():
    d = DecisionRule(LABELS, ood={"method": "msp", "threshold": 0.3})(np.array([0.3, 0.4, 0.3]))
    assert d.ood == {"method": "msp", "score": 0.6, "threshold": 0.3, "flag": True}
    z = np.array([2.0, 0.0, -1.0])
    d = DecisionRule(LABELS, output_kind="logits", ood={"score": "energy", "threshold": -1.0})(z)
    assert d.ood["score"] == pytest.approx(-np.log(np.exp(z).sum()), abs=1e-6) and d.ood["flag"] is False
    assert DecisionRule(LABELS)(np.array([0.2, 0.5, 0.3])).ood is None
    with pytest.raises(EdgeError, match="gives 2 outputs"):
        DecisionRule(LABELS)(np.array([0.5, 0.5]))
    with pytest.raises(EdgeError, match="temperature"):
        DecisionRule(LABELS, temperature=0)


def test_knn_gate_scores_the_feature_output(tmp_path):
    from kdefect.core.knn import KNN, save_bank

    bank = np.eye(4)[[0, 0, 1, 1]] + 0.01  # two tight clusters of training features
    knn = KNN.fit(bank, k=2)
    gate = {"method": "knn", "k": 2, "threshold": 0.1, "bank": "m.knn.npy",
            "bank_sha256": save_bank(tmp_path / "m.knn.npy", knn)}
    sc = Sidecar(sha256="x", task="classify", labels=list(LABELS), input=InputSpec(size=[8, 8]),
                 thresholds={"review_below": 0.0, "temperature": 1.0, "ood": gate})
    rule = rule_from_sidecar(sc, model_path=tmp_path / "m.tflite")
    p = np.array([0.2, 0.5, 0.3])
    near, far = rule(p, np.array([2.0, 0.0, 0.0, 0.0])), rule(p, np.array([0.0, 0.0, 0.0, 1.0]))
    assert near.ood["flag"] is False and near.ood["score"] < 0.05
    assert far.ood["flag"] is True and far.ood["score"] == pytest.approx(np.sqrt(2), abs=0.02)
    assert near.label == far.label == "scratch"  # the gate never changes the class
    with pytest.raises(EdgeError, match="feature output"):
        rule(p)
    with pytest.raises(EdgeError, match="model_path"):
        rule_from_sidecar(sc)
    with pytest.raises(EdgeError, match="feature bank"):
        DecisionRule(LABELS, ood=gate)


def test_energy_on_a_probability_model_is_disabled_with_a_warning(caplog):
    sc = Sidecar(sha256="x", task="classify", labels=list(LABELS), input=InputSpec(size=[8, 8]),
                 thresholds={"review_below": 0.7, "temperature": 1.3, "ood": {"score": "energy", "threshold": 1.0}})
    rule = rule_from_sidecar(sc)
    assert (rule.review_below, rule.temperature, rule.ood) == (0.7, 1.3, None)
    assert "energy" in caplog.text
    assert rule_from_sidecar(sc, review_below=0.1, temperature=1.0).review_below == 0.1


def test_operating_point_verdict():
    rule = DecisionRule(LABELS, good_label="good", good_min_prob=0.8)
    assert rule(np.array([0.7, 0.2, 0.1])).verdict == "fail"  # argmax is good, but not sure enough
    assert rule(np.array([0.9, 0.05, 0.05])).verdict == "pass"
    assert rule(np.array([0.1, 0.8, 0.1])).verdict == "fail"
    assert DecisionRule(LABELS)(np.array([0.7, 0.2, 0.1])).verdict is None


def test_log_is_one_json_object_per_line_and_repairs_a_torn_tail(tmp_path):
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.write({"source": "a", "score": np.float32(0.5), "probs": {"x": 1.0}})
        log.write({"source": "b", "score": 0.25})
    with open(path, "ab") as fh:  # a power cut in the middle of a record
        fh.write(b'{"source": "c", "sco')
    with DecisionLog(path) as log:
        log.write({"source": "d"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["source"] for line in lines] == ["a", "b", "d"]
    assert read_log(path)[0]["score"] == 0.5


@pytest.mark.parametrize("sync", ["record", "group"])
def test_fsync_policies_sync_every_record_by_close(tmp_path, monkeypatch, sync):
    """record: one fsync per record, in the writer's thread; group: fsyncs in a background thread, fewer than
    records when they come fast, and close() returns only after a last fsync of everything."""
    import itertools
    import os
    import threading

    calls: list[tuple[str, int]] = []
    real = os.fsync

    def spy(fd):
        real(fd)
        calls.append((threading.current_thread().name, os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, sync=sync)
    for i in range(200):
        log.write({"i": i})
    log.close()
    assert [r["i"] for r in read_log(path)] == list(range(200))
    assert calls[-1][1] == path.stat().st_size, "the last fsync covers the whole file"
    if sync == "record":
        assert len(calls) == 201 and {t for t, _ in calls} == {threading.current_thread().name}
    else:
        background = [c for c in calls if c[0] == "kdefect-log-fsync"]
        assert len(calls) < 201 and calls[-1][0] == threading.current_thread().name
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(background))
    with pytest.raises(EdgeError, match="unknown fsync policy"):
        DecisionLog(path, sync="sometimes")
